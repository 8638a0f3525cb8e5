"""Checkpoints in ``torch.distributed.checkpoint`` (DCP), on any fsspec location, at any world size.

``<checkpoints>/step_00000100/`` holds one DCP checkpoint with the whole trainer state:

- ``model`` and ``optim``: the (sharded) weights and AdamW state, by parameter name; DCP reshards
  them, so a run saved on 8 ranks resumes on 2, or on one process without a process group;
- ``trainer``: one JSON document, the step, the world size and number of data streams it was
  written with, the scheduler's state and the data position of every stream (``trainer.data``);
- ``rng.rank<r>``: each rank's RNG states, restored when the world size is the same (drop-path
  draws then repeat exactly; at another world size they cannot).

The location is a local path or any fsspec URL (``s3://bucket/runs/s1/checkpoints``; the endpoint
and credentials come from the usual environment, as for the shards). DCP writes its ``.metadata``
last, once every rank's data is in place, so only a directory with ``.metadata`` counts as a
checkpoint; ``config.json`` beside it records the run's configuration.
"""

import json
import pickle
import random
import warnings
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from .distributed import Runtime

METADATA = ".metadata"


def _fs(location: str):
    from fsspec.core import url_to_fs

    return url_to_fs(str(location))


def _join(location: str, name: str) -> str:
    return f"{str(location).rstrip('/')}/{name}"


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


def save(location: str, step: int, model, optimizer, trainer_state: dict, config, runtime: Runtime) -> str:
    """Write the checkpoint of ``step`` under ``location``; every rank calls this.

    ``trainer_state`` (JSON-able: scheduler, data position, ...) must be the same on every rank.
    """
    path = _join(location, f"step_{step:08d}")
    fs, root = _fs(path)
    if runtime.is_main:
        if fs.exists(root):  # a partial attempt at this step: start it over
            fs.rm(root, recursive=True)
        fs.makedirs(root, exist_ok=True)
        with fs.open(_join(root, "config.json"), "w") as out:
            out.write(config.model_dump_json(indent=2))
    _barrier(runtime)
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {
        "model": model_state,
        "optim": optim_state,
        "trainer": json.dumps({**trainer_state, "step": step, "world_size": runtime.world_size}),
        f"rng.rank{runtime.rank}": pickle.dumps(rng_state()),
    }
    with _quiet():
        dcp.save(state, storage_writer=FsspecWriter(path, thread_count=2), no_dist=not runtime.distributed)
    return path


def latest(location: str) -> str | None:
    """The newest complete checkpoint under ``location``, if any."""
    fs, root = _fs(location)
    fs.invalidate_cache()
    if not fs.exists(root):
        return None
    steps = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    done = [name for name in steps if name.startswith("step_") and fs.exists(_join(_join(root, name), METADATA))]
    return _join(location, done[-1]) if done else None


def read_trainer_state(path: str) -> dict:
    """The ``trainer`` document of a checkpoint (step, world size, scheduler, data position)."""
    reader = FsspecReader(str(path))
    if "trainer" not in reader.read_metadata().state_dict_metadata:
        raise ValueError(
            f"{path} has no trainer state: it was written by the older trainer (per-rank trainer_rank files); "
            "start over with --no-resume or another checkpoint location"
        )
    state = {"trainer": ""}
    with _quiet():
        dcp.load(state, storage_reader=reader, no_dist=True)
    return json.loads(state["trainer"])


def load(path: str, model, optimizer, runtime: Runtime) -> dict:
    """Restore model, optimizer and (at the same world size) RNG from ``path``; returns the trainer state."""
    trainer_state = read_trainer_state(path)
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    rng_key = f"rng.rank{runtime.rank}"
    same_world = trainer_state["world_size"] == runtime.world_size
    if same_world:
        state[rng_key] = b""
    with _quiet():
        dcp.load(state, storage_reader=FsspecReader(str(path)), no_dist=not runtime.distributed)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if same_world:
        set_rng_state(pickle.loads(state[rng_key]))
    return trainer_state


def read_config(path: str) -> dict:
    fs, root = _fs(path)
    with fs.open(_join(root, "config.json")) as source:
        return json.loads(source.read())


def load_model_weights(path: str, model) -> None:
    """Only the model's weights from a checkpoint (for evaluation or export), any world size."""
    state = {"model": get_model_state_dict(model)}
    distributed = dist.is_available() and dist.is_initialized()
    with _quiet():
        dcp.load(state, storage_reader=FsspecReader(str(path)), no_dist=not distributed)
    set_model_state_dict(model, state["model"])


@contextmanager
def _quiet():
    """DCP warns that it runs in one process whenever asked to (``no_dist``): that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()
