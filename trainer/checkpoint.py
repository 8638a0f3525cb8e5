"""Checkpoints that resume exactly: model, optimizer, scheduler, data position and RNG.

Layout of ``<out>/checkpoints/step_00000100/``: the model and optimizer through
``torch.distributed.checkpoint`` (each rank writes its own shards, any world size can read
them back), ``trainer_rank<r>.pt`` per rank (scheduler, step, batches consumed, RNG states) and
``config.json``. A checkpoint is written under ``step_....tmp`` and renamed when complete, so a
directory without ``.tmp`` is always whole.
"""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from .distributed import Runtime


def _barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(
    directory: Path, step: int, model, optimizer, scheduler, batches_consumed: int, config, runtime: Runtime
) -> Path:
    """Write the checkpoint of ``step``; every rank calls this."""
    final = Path(directory) / f"step_{step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    if runtime.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(runtime)
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save(
        {"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp), no_dist=not runtime.distributed
    )
    trainer_state = {
        "step": step,
        "batches_consumed": batches_consumed,
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "world_size": runtime.world_size,
    }
    torch.save(trainer_state, tmp / f"trainer_rank{runtime.rank}.pt")
    _barrier(runtime)
    if runtime.is_main:
        (tmp / "config.json").write_text(config.model_dump_json(indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    _barrier(runtime)
    return final


def latest(directory: Path) -> Path | None:
    """The newest complete checkpoint under ``directory``, if any."""
    done = sorted(p for p in Path(directory).glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def load(path: Path, model, optimizer, scheduler, runtime: Runtime) -> dict:
    """Restore everything from ``path``; returns this rank's trainer state (step, data position)."""
    path = Path(path)
    trainer_file = path / f"trainer_rank{runtime.rank}.pt"
    if not trainer_file.exists():
        raise FileNotFoundError(
            f"{trainer_file} missing: was {path} written with {runtime.world_size} ranks?"
        )
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(path), no_dist=not runtime.distributed)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer_state = torch.load(trainer_file, weights_only=False)
    scheduler.load_state_dict(trainer_state["scheduler"])
    set_rng_state(trainer_state["rng"])
    return trainer_state


def read_config(path: Path) -> dict:
    return json.loads((Path(path) / "config.json").read_text())


def load_model_weights(path: Path, model) -> None:
    """Only the model's weights from a checkpoint (for evaluation or export), any world size."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id=str(path), no_dist=not (dist.is_available() and dist.is_initialized()))
    set_model_state_dict(model, state["model"])
