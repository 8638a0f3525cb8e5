"""The training loop: one function, :func:`train`, run by every rank under torchrun or Ray Train.

A step pulls micro-batches (each bounded by a token budget) until the whole world holds
``global_batch_samples`` samples, then runs forward and backward on each. The loss is the sum
of token losses over the world's step divided by the world's count of target tokens, so one
process with two micro-batches and two processes with one each take the same step.
"""

import json
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from pipelines._imports import require
from pipelines._model import ConfigModel

from . import checkpoint
from .data import Batch, DataConfig, ShardStream, make_loader
from .distributed import Runtime, all_reduce_sum, setup, shard
from .model import ModelConfig, build_model, freeze_language_model, visual_tokens_per_tile
from .optim import OptimConfig, build_optimizer, build_scheduler
from .tiling import normalise_tiles
from .tokenize import ChatTokenizer, TokenizeConfig, load_tokenizer


class TrainConfig(ConfigModel):
    """A training run: the recipe's hyper-parameters plus where data and outputs live."""

    recipe: str = Field("custom", description="name of the recipe this run started from, for the logs")
    model: ModelConfig = ModelConfig()
    data: DataConfig
    tokenize: TokenizeConfig
    optim: OptimConfig = OptimConfig()
    freeze_llm: bool = Field(False, description="stage 1: train InternViT and the MLP only")
    steps: int = Field(1000, ge=1, description="optimizer steps in the whole run")
    global_batch_samples: int = Field(
        2048,
        ge=1,
        description="samples per optimizer step over all ranks: micro-batches accumulate until at least this many",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    out_dir: str = Field("runs/train", description="checkpoints, TensorBoard logs and metrics.jsonl")
    checkpoint_every: int = Field(500, ge=0, description="steps between checkpoints; 0: only at the end")
    seed: int = Field(0, description="seeds model initialisation and drop-path")
    resume: bool = Field(True, description="continue from the newest checkpoint in out_dir when there is one")
    progress: bool = Field(True, description="show a progress bar on rank 0")


def train(config: TrainConfig) -> list[dict]:
    """Run (or resume) a training run; returns the per-step metrics of this process's steps.

    Every rank calls it; under torchrun or Ray Train the process group is joined here.
    """
    runtime = setup()
    bf16 = config.precision == "bf16" or (config.precision == "auto" and runtime.device.type == "cuda")
    tokenizer = load_tokenizer(config.tokenize.tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    torch.manual_seed(config.seed)
    model = build_model(config.model.preset, len(tokenizer), image_token_id, config.model)
    if config.freeze_llm:
        freeze_language_model(model)
    model.to(runtime.device)
    if runtime.distributed:
        shard(model, runtime, torch.bfloat16 if bf16 else None)
    model.train()
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.steps)

    out_dir = Path(config.out_dir)
    step, batches_consumed = 0, 0
    previous = checkpoint.latest(out_dir / "checkpoints") if config.resume else None
    if previous is not None:
        state = checkpoint.load(previous, model, optimizer, scheduler, runtime)
        step, batches_consumed = state["step"], state["batches_consumed"]

    chat = ChatTokenizer(
        tokenizer,
        visual_tokens_per_tile(model.config),
        config.tokenize.context_length,
        config.tokenize.system_message,
    )
    stream = ShardStream(config.data, chat, runtime.rank, runtime.world_size, batches_consumed)
    batches = iter(make_loader(stream))
    log = _Log(config, runtime, out_dir, start=step)
    history = []
    while step < config.steps:
        started = time.perf_counter()
        micro_batches = _gather_step(batches, config.global_batch_samples, runtime)
        batches_consumed += len(micro_batches)
        metrics = train_step(model, optimizer, micro_batches, runtime, bf16, config.optim.grad_clip)
        scheduler.step()
        step += 1
        metrics.update(step=step, lr=scheduler.get_last_lr()[0], seconds=time.perf_counter() - started)
        history.append(metrics)
        log.write(metrics)
        if step == config.steps or (config.checkpoint_every and step % config.checkpoint_every == 0):
            checkpoint.save(
                out_dir / "checkpoints", step, model, optimizer, scheduler, batches_consumed, config, runtime
            )
    log.close()
    return history


def _gather_step(batches, target_samples: int, runtime: Runtime) -> list[Batch]:
    """Micro-batches for one step; every rank takes the same number, so collectives line up."""
    micro_batches, samples = [], 0.0
    while samples < target_samples:
        micro_batches.append(next(batches))
        samples = all_reduce_sum(sum(b.n_samples for b in micro_batches), runtime)
    return micro_batches


def train_step(
    model, optimizer, micro_batches: list[Batch], runtime: Runtime, bf16: bool, grad_clip: float
) -> dict:
    """Forward and backward over the micro-batches, clip, and take one optimizer step."""
    device = runtime.device
    target_tokens = all_reduce_sum(sum(b.n_target_tokens for b in micro_batches), runtime)
    # FSDP averages gradients over ranks; scaling by world size turns that into a sum, so the
    # result is sum(token losses) / target_tokens over the whole world.
    scale = runtime.world_size if runtime.distributed else 1
    loss_sum = 0.0
    for i, batch in enumerate(micro_batches):
        if runtime.distributed and hasattr(model, "set_requires_gradient_sync"):
            model.set_requires_gradient_sync(i == len(micro_batches) - 1)
        pixel_values = None
        if batch.pixel_values is not None:
            pixel_values = normalise_tiles(batch.pixel_values.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                pixel_values=pixel_values,
                labels=batch.labels.to(device),
                num_items_in_batch=target_tokens,  # the loss is a sum over tokens divided by this
            )
        (out.loss * scale).backward()
        loss_sum += out.loss.detach().float().item() * target_tokens
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "loss": all_reduce_sum(loss_sum, runtime) / target_tokens,
        "grad_norm": float(grad_norm),
        "tokens": all_reduce_sum(sum(int(b.attention_mask.sum()) for b in micro_batches), runtime),
        "target_tokens": target_tokens,
        "tiles": all_reduce_sum(sum(b.n_tiles for b in micro_batches), runtime),
        "samples": all_reduce_sum(sum(b.n_samples for b in micro_batches), runtime),
        "micro_batches": len(micro_batches),
        "dropped": _merge_dropped(micro_batches),
    }


def _merge_dropped(micro_batches: list[Batch]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for batch in micro_batches:
        for reason, count in batch.dropped.items():
            merged[reason] = merged.get(reason, 0) + count
    return merged


class _Log:
    """Rank 0's progress bar, TensorBoard scalars and ``metrics.jsonl``."""

    def __init__(self, config: TrainConfig, runtime: Runtime, out_dir: Path, start: int):
        self.enabled = runtime.is_main
        if not self.enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = (out_dir / "metrics.jsonl").open("a")
        self.board = _summary_writer(out_dir / "tensorboard")
        tqdm = require("tqdm", "train")
        self.bar = tqdm.tqdm(
            total=config.steps, initial=start, disable=not config.progress, desc=config.recipe
        )

    def write(self, m: dict) -> None:
        if not self.enabled:
            return
        rates = {"tokens_per_s": m["tokens"] / m["seconds"], "tiles_per_s": m["tiles"] / m["seconds"]}
        m.update(rates)
        self.metrics.write(json.dumps(m) + "\n")
        self.metrics.flush()
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "tiles_per_s"):
            self.board.add_scalar(f"train/{key}", m[key], m["step"])
        self.bar.set_postfix(
            loss=f"{m['loss']:.4f}",
            tok_s=f"{rates['tokens_per_s']:.0f}",
            tiles_s=f"{rates['tiles_per_s']:.1f}",
        )
        self.bar.update(1)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.board.close()
            self.metrics.close()


def _summary_writer(path: Path):
    """TensorBoard's writer from torch when ``tensorboard`` is installed, else from tensorboardX."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        SummaryWriter = require("tensorboardX", "train").SummaryWriter
    return SummaryWriter(str(path))
