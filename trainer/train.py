"""The training loop: one function, :func:`train`, run by every rank under torchrun or Ray Train.

A step pulls rounds of micro-batches (one from each of the rank's data streams, each packed up to a
token budget) until the whole world holds ``global_batch_samples`` samples, then runs forward and
backward on each (``trainer.step``). Checkpoints hold the whole state in DCP
(``trainer.checkpoint``) on any fsspec location, and a run resumes from one at any world size that
divides its number of data streams.
"""

import json
import time
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from pydantic import Field

from pipelines._imports import require
from pipelines._model import ConfigModel

from . import checkpoint, init
from .data import DataConfig, DataState, ShardStream, make_loader, stream_count
from .distributed import Runtime, local_world_size, setup, shard
from .model import ModelConfig, build_model, freeze_language_model, visual_tokens_per_tile
from .optim import OptimConfig, build_optimizer, build_scheduler
from .step import gather_step, train_step
from .tokenization import ChatTokenizer, TokenizeConfig, load_tokenizer

__all__ = ["TrainConfig", "gather_step", "train", "train_step"]


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
    out_dir: str = Field("runs/train", description="TensorBoard logs and metrics.jsonl (and checkpoints by default)")
    checkpoint_dir: str | None = Field(
        None, description="where checkpoints go: a path or fsspec URL (s3://...); None: OUT/checkpoints"
    )
    checkpoint_every: int = Field(500, ge=0, description="steps between checkpoints; 0: only at the end")
    hsdp: bool = Field(
        False, description="HSDP: shard within groups of shard_group ranks, replicate across them"
    )
    shard_group: int | None = Field(
        None, ge=1, description="hsdp: ranks per shard group; None: the processes of one node (LOCAL_WORLD_SIZE)"
    )
    seed: int = Field(0, description="seeds model initialisation and drop-path")
    resume: bool = Field(True, description="continue from the newest checkpoint when there is one")
    init_from: str | None = Field(
        None,
        description="start a new run from these weights: a checkpoint of ours (stage 1 for stage 2: a step "
        "directory, a checkpoint location or a run folder) or a folder of InternVL-Chat-V1-5 safetensors; "
        "ignored when the run resumes from its own checkpoint",
    )
    progress: bool = Field(True, description="show a progress bar on rank 0")

    @property
    def checkpoint_location(self) -> str:
        return self.checkpoint_dir or str(Path(self.out_dir) / "checkpoints")


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
    previous = checkpoint.latest(config.checkpoint_location) if config.resume else None
    if previous is None and config.init_from:
        init.load_weights(model, init.resolve(config.init_from), config.model.preset)
    if config.freeze_llm:
        freeze_language_model(model)
    model.to(runtime.device)
    if runtime.distributed:
        group = (config.shard_group or local_world_size()) if config.hsdp else None
        shard(model, runtime, torch.bfloat16 if bf16 else None, group)
    model.train()
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.steps)

    out_dir = Path(config.out_dir)
    step, data_state = 0, DataState(stream_count(config.data, runtime.world_size))
    if previous is not None:
        state = checkpoint.load(previous, model, optimizer, runtime)
        scheduler.load_state_dict(state["scheduler"])
        step, data_state = state["step"], DataState.from_json(state["data"])
        if config.data.streams not in (None, data_state.streams):
            raise ValueError(
                f"data.streams={config.data.streams} but {previous} was written with {data_state.streams} streams"
            )

    chat = ChatTokenizer(
        tokenizer,
        visual_tokens_per_tile(model.config),
        config.tokenize.context_length,
        config.tokenize.system_message,
    )
    stream = ShardStream(config.data, chat, runtime.rank, runtime.world_size, data_state)
    batches = iter(make_loader(stream))
    log = _Log(config, runtime, out_dir, start=step)
    history = []
    while step < config.steps:
        started = time.perf_counter()
        micro_batches, totals = gather_step(batches, config.global_batch_samples, runtime, stream.per_round)
        for batch in micro_batches:
            data_state.advance(batch)
        metrics = train_step(
            model, optimizer, micro_batches, runtime, bf16, config.optim.grad_clip, totals=totals
        )
        scheduler.step()
        step += 1
        metrics.update(step=step, lr=scheduler.get_last_lr()[0], seconds=time.perf_counter() - started)
        history.append(metrics)
        log.write(metrics)
        if step == config.steps or (config.checkpoint_every and step % config.checkpoint_every == 0):
            trainer_state = {"scheduler": scheduler.state_dict(), "data": _world_data(data_state, runtime).to_json()}
            checkpoint.save(config.checkpoint_location, step, model, optimizer, trainer_state, config, runtime)
    log.close()
    return history


def _world_data(state: DataState, runtime: Runtime) -> DataState:
    """Every rank's stream positions, on every rank."""
    if not runtime.distributed:
        return state
    gathered: list = [None] * runtime.world_size
    dist.all_gather_object(gathered, state.to_json())
    return state.merge([DataState.from_json(other) for other in gathered])


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
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "tiles_per_s", "padding_share"):
            self.board.add_scalar(f"train/{key}", m[key], m["step"])
        self.bar.set_postfix(
            loss=f"{m['loss']:.4f}",
            tok_s=f"{rates['tokens_per_s']:.0f}",
            tiles_s=f"{rates['tiles_per_s']:.1f}",
            pad=f"{m['padding_share']:.0%}",
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
