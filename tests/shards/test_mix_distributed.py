"""The mixer and writer as passes of units: the same bytes in this process and on Ray, per-unit resume,
blocks that bound the shards, and a permutation that never needs a table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipelines.storage import Storage
from shards import ShardSettings, mix_and_write
from shards.mix import MixSettings
from shards.permute import permute
from shards.plan import plan_inputs, plan_mixture
from shards.reader import iter_samples
from shards.write import STATE


def _tars(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.tar"))}


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 1000, 4097])
def test_permute_is_a_bijection_for_any_size(n):
    for seed in (0, 1, 2**40 + 3):
        positions = permute(np.arange(n), n, seed)
        assert np.array_equal(np.sort(positions), np.arange(n))


def test_permute_of_a_part_agrees_with_the_whole_and_depends_on_the_seed():
    n = 10_000
    whole = permute(np.arange(n), n, seed=9)
    part = np.arange(3_000, 3_500)
    assert np.array_equal(permute(part, n, seed=9), whole[part])  # any worker computes its own picks alone
    assert not np.array_equal(permute(np.arange(n), n, seed=10), whole)
    # Neighbouring picks (one source's rows) scatter over the whole range.
    assert np.ptp(whole[:100]) > n * 0.8
    with pytest.raises(ValueError, match="outside"):
        permute(np.array([n]), n, seed=9)


def test_same_bytes_in_this_process_and_on_ray_and_the_work_folder_goes(task_root, tmp_path, local_ray):
    mix, settings = MixSettings(total_samples=900, seed=4), ShardSettings(max_samples=40, shards_per_task=3)
    import ray

    ray.shutdown()  # the reference runs every pass in this process
    reference = tmp_path / "local"
    mix_and_write(str(task_root), reference, mix, settings)
    from pipelines.runtime import ensure_ray

    ensure_ray(None, num_cpus=2)
    on_ray = tmp_path / "ray"
    mix_and_write(str(task_root), on_ray, mix, settings)
    assert _tars(on_ray) == _tars(reference) and len(_tars(reference)) == 23
    assert (on_ray / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    assert not (on_ray / STATE).exists() and not list((task_root / "_mix").glob("*")), "state left behind"


def test_blocks_cut_by_the_byte_budget_never_share_a_shard(task_root, tmp_path):
    budget = 64 * 1024
    manifest = mix_and_write(str(task_root), tmp_path, MixSettings(total_samples=500, seed=1),
                             ShardSettings(max_samples=30, max_bytes=budget, shards_per_task=2, report=False))
    shards = manifest["shards"]
    assert all(entry["bytes"] <= budget for entry in shards) and sum(e["samples"] for e in shards) == 500
    assert len(shards) > 500 // 30 + 1, "the budget binds here, so blocks need extra shards"
    # Blocks are 60 positions: walking the shards in order, a block boundary is always a shard boundary.
    ends = np.cumsum([entry["samples"] for entry in shards])
    assert set(range(60, 500, 60)) <= set(ends.tolist())
    keys = [key for entry in shards for key, _ in iter_samples(tmp_path / entry["name"])]
    assert len(keys) == len(set(keys)) == 500


def test_a_plan_killed_between_units_resumes_to_the_same_shards(task_root, tmp_path, monkeypatch):
    import shards.passes
    import shards.plan

    for module in (shards.passes, shards.plan):  # several index and route units even on these few tables
        monkeypatch.setattr(module, "TABLES_PER_UNIT", 2)
    mix, settings = MixSettings(total_samples=700, seed=6), ShardSettings(max_samples=50, shards_per_task=2)
    reference = tmp_path / "reference"
    mix_and_write(str(task_root), reference, mix, settings)

    # A run that died part-way: the passes' units left some outputs and not others.
    block = settings.max_samples * settings.shards_per_task
    from shards.write import _fingerprint

    inputs = plan_inputs(Storage(str(task_root)), mix, block, salt=_fingerprint(settings))
    plan = plan_mixture(str(task_root), mix, block, inputs)
    work = task_root / plan.ctx.work
    removed = 0
    for folder in ("index", "dups", "route"):
        markers = sorted((work / folder).glob("*.json"))
        for marker in markers[::2]:  # every other unit of every pass "never finished"
            marker.unlink()
            removed += 1
    assert removed >= 6
    resumed = tmp_path / "resumed"
    mix_and_write(str(task_root), resumed, mix, settings)
    assert _tars(resumed) == _tars(reference)
    assert (resumed / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()


def test_the_remainder_is_drawn_over_the_whole_dataset(task_tables, tmp_path):
    """A dataset split over 4 tables, half of it needed: every table gives about its share."""
    storage = task_tables(tmp_path, {"big": ("captioning", "en", 400)}, files_per_dataset=4)
    plan = plan_mixture(storage.root, MixSettings(total_samples=200, shares={"captioning": 1.0}, seed=3))
    ids = plan.ids()
    assert len(set(ids)) == 200
    per_table = Counter(int(sample_id.rsplit("-", 1)[1]) // 100 for sample_id in ids)
    assert sorted(per_table) == [0, 1, 2, 3] and all(30 <= n <= 70 for n in per_table.values()), per_table


def test_an_empty_task_table_takes_part_without_error(task_tables, tmp_path):
    """A unit whose every record was dropped (an OCR shard with no text) leaves an empty table."""
    from pipelines.layout.task_table import write_task_table

    storage = task_tables(tmp_path, {"some": ("captioning", "en", 30)}, files_per_dataset=2)
    write_task_table(storage, "some", "00002", [], drops={"no_text": 4}, inputs=4)
    manifest = mix_and_write(storage.root, tmp_path / "out", MixSettings(total_samples=40, shares={"captioning": 1.0}),
                             ShardSettings(max_samples=16, report=False))
    assert sum(entry["samples"] for entry in manifest["shards"]) == 40
    assert manifest["drops"]["tasks"]["some"]["no_text"] == 4


def test_how_tables_are_grouped_into_units_changes_no_byte(task_root, tmp_path, monkeypatch):
    """Index and route units take 32 tables each; with 2 per unit (six units here) the shards are the same."""
    import shards.passes
    import shards.plan

    mix, settings = MixSettings(total_samples=500, seed=8), ShardSettings(max_samples=40, shards_per_task=2)
    mix_and_write(str(task_root), tmp_path / "default", mix, settings)
    monkeypatch.setattr(shards.passes, "TABLES_PER_UNIT", 2)
    monkeypatch.setattr(shards.plan, "TABLES_PER_UNIT", 2)
    mix_and_write(str(task_root), tmp_path / "pairs", mix, settings)
    assert _tars(tmp_path / "pairs") == _tars(tmp_path / "default")
    assert (tmp_path / "pairs" / "manifest.json").read_bytes() == (tmp_path / "default" / "manifest.json").read_bytes()
