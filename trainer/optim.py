"""AdamW with decoupled weight decay on matrices only, and a cosine schedule with linear warm-up."""

import math

import torch
from pydantic import Field

from pipelines._model import ConfigModel


class OptimConfig(ConfigModel):
    """Optimiser and learning-rate schedule (SPEC §4 gives the recipes' values)."""

    lr: float = Field(1e-5, gt=0, description="peak learning rate, reached at the end of warm-up")
    weight_decay: float = Field(0.05, ge=0, description="AdamW decoupled weight decay on weight matrices")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW beta1, beta2")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    warmup_steps: int | None = Field(None, ge=0, description="linear warm-up steps; None: use warmup_ratio")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="warm-up as a share of all steps")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="the cosine ends at lr * min_lr_ratio")
    grad_clip: float = Field(1.0, gt=0, description="clip the global gradient norm to this value")
    fused: bool | None = Field(
        None, description="AdamW's fused CUDA kernel; None = on when the parameters are on a GPU"
    )


def build_optimizer(model: torch.nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases, norms and layer scales (1-D) are not decayed."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = config.fused if config.fused is not None else trainable[0].device.type == "cuda"
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=config.lr, betas=config.betas, eps=config.eps, fused=fused
    )


def warmup_steps(config: OptimConfig, total_steps: int) -> int:
    """Warm-up length in steps: explicit, or the ratio of the run rounded up."""
    if config.warmup_steps is not None:
        return config.warmup_steps
    return math.ceil(config.warmup_ratio * total_steps)


def build_scheduler(optimizer, config: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the peak, then half a cosine down to ``min_lr_ratio`` at ``total_steps``."""
    warmup = warmup_steps(config, total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
