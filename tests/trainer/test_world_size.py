"""Runs on two gloo ranks against one process: the same steps; a checkpoint resumed at the other size."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from trainer import checkpoint
from trainer.recipes import stage2
from trainer.train import train

sys.path.insert(0, str(Path(__file__).parent))


def _config(shard_dir, tokenizer_dir, out, **overrides):
    """Two data streams, no drop-path (its random draws are per rank, so they depend on the world size)."""
    settings = dict(
        out_dir=str(out),
        steps=4,
        global_batch_samples=8,
        checkpoint_every=2,
        progress=False,
        model={"preset": "tiny", "drop_path_rate": 0.0},
        data={"max_tiles": 2, "tokens_per_batch": 1024, "shuffle_buffer": 8, "streams": 2},
        tokenize={"context_length": 512, "system_message": ""},
        optim={"lr": 3e-3, "warmup_steps": 1},
    )
    settings.update(overrides)
    return stage2(str(shard_dir), str(tokenizer_dir), preset="tiny", **settings)


def _two_ranks(config, tmp_path) -> list[dict]:
    import trainer_train_worker

    config_path, result = tmp_path / "config.json", tmp_path / "history.json"
    config_path.write_text(config.model_dump_json())
    rendezvous = tmp_path / f"rendezvous-{config.hsdp}"
    mp.spawn(trainer_train_worker.run, args=(2, str(rendezvous), str(config_path), str(result)), nprocs=2)
    return json.loads(result.read_text())


def test_a_checkpoint_of_two_ranks_resumes_on_one_with_the_same_next_losses(
    shard_dir, tokenizer_dir, tmp_path
):
    two = _two_ranks(_config(shard_dir, tokenizer_dir, tmp_path / "two"), tmp_path)
    assert [m["step"] for m in two] == [1, 2, 3, 4]
    saved = checkpoint.read_trainer_state(tmp_path / "two" / "checkpoints" / "step_00000002")
    assert saved["world_size"] == 2 and sorted(saved["data"]["positions"]) == ["0", "1"]
    one = tmp_path / "one"
    shutil.copytree(tmp_path / "two" / "checkpoints" / "step_00000002", one / "checkpoints" / "step_00000002")
    resumed = train(_config(shard_dir, tokenizer_dir, one))
    assert [m["step"] for m in resumed] == [3, 4]
    assert [m["samples"] for m in resumed] == [m["samples"] for m in two[2:]]
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in two[2:]], rel=1e-4)
    assert two[-1]["loss"] < two[0]["loss"]  # it learns: the comparison is not of constants


def test_hsdp_on_two_ranks_takes_the_steps_of_one_process(shard_dir, tokenizer_dir, tmp_path):
    """HSDP with shard groups of one rank (two replicas) against one process with both streams."""
    settings = dict(steps=2, checkpoint_every=0)
    hsdp = _two_ranks(
        _config(shard_dir, tokenizer_dir, tmp_path / "hsdp", hsdp=True, shard_group=1, **settings), tmp_path
    )
    alone = train(_config(shard_dir, tokenizer_dir, tmp_path / "alone", **settings))
    assert [m["samples"] for m in hsdp] == [m["samples"] for m in alone]
    assert [m["loss"] for m in hsdp] == pytest.approx([m["loss"] for m in alone], rel=1e-4)
    assert [m["grad_norm"] for m in hsdp] == pytest.approx([m["grad_norm"] for m in alone], rel=1e-3)
