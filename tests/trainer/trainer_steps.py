"""A few training steps on given micro-batches, alone or sharded (shared by the FSDP test)."""

import torch

from trainer.distributed import setup, shard
from trainer.model import ModelConfig, build_model
from trainer.optim import OptimConfig, build_optimizer
from trainer.train import train_step


def run_steps(vocab_size: int, image_token_id: int, steps: list[list]) -> list[float]:
    runtime = setup()
    torch.manual_seed(0)
    settings = ModelConfig(preset="tiny", gradient_checkpointing=True)
    model = build_model("tiny", vocab_size, image_token_id, settings)
    if runtime.distributed:
        shard(model, runtime, None)
    optimizer = build_optimizer(model, OptimConfig(lr=3e-3))
    return [
        train_step(model, optimizer, micro, runtime, bf16=False, grad_clip=1.0)["loss"] for micro in steps
    ]
