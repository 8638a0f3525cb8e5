"""Mixing task tables into shards: limits, interleaving, manifest, determinism, kill and rerun."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shards import ShardSettings, ShardWriteError, mix_and_write, read_manifest
from shards.mix import MixSettings
from shards.reader import iter_samples


def _tars(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.tar"))}


def test_shards_hold_the_planned_mixture(task_root, tmp_path):
    out = tmp_path / "out"
    manifest = mix_and_write(
        str(task_root), out, MixSettings(total_samples=1500, seed=3), ShardSettings(max_samples=200)
    )

    assert [entry["samples"] for entry in manifest["shards"]] == [200] * 7 + [100]
    assert not list(out.glob(".*tmp")), "temporary files left behind"
    assert read_manifest(out) == json.loads(json.dumps(manifest))
    seen = Counter()
    for entry in manifest["shards"]:
        path = out / entry["name"]
        assert path.stat().st_size == entry["bytes"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        sources = Counter()
        for key, members in iter_samples(path):
            record = json.loads(members["json"])
            image = members.get("jpg") or members["png"]
            assert record["id"] == key
            assert hashlib.sha256(image).hexdigest() == record["meta"]["image_sha256"]  # original bytes
            sources[record["source"]] += 1
            seen[record["task"]] += 1
        assert len(sources) >= 4, f"{entry['name']} is not interleaved: {sources}"
    assert seen == {task: stats["samples"] for task, stats in manifest["tasks"].items()}
    assert manifest["drops"]["tasks"]["laion_en"] == {"empty_caption": 1}  # the builders' counters arrive
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    captioning = manifest["tasks"]["captioning"]
    row = f"| captioning | 53.90 | {100 * captioning['achieved_share']:.2f} | {captioning['samples']:,} |"
    assert row in (out / "report.md").read_text()


def test_byte_budget_closes_shards_before_they_overflow(task_root, tmp_path):
    budget = 96 * 1024
    manifest = mix_and_write(
        str(task_root),
        tmp_path,
        MixSettings(total_samples=600, seed=0),
        ShardSettings(max_bytes=budget, report=False),
    )
    assert len(manifest["shards"]) > 3
    assert all(entry["bytes"] <= budget for entry in manifest["shards"])
    assert sum(entry["samples"] for entry in manifest["shards"]) == 600


def test_same_seed_same_bytes_other_seed_other_selection(task_root, tmp_path):
    settings = ShardSettings(max_samples=250)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        mix_and_write(str(task_root), tmp_path / name, MixSettings(total_samples=1000, seed=seed), settings)
    assert _tars(tmp_path / "a") == _tars(tmp_path / "b")
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()

    def selection(name):
        return [key for shard in sorted((tmp_path / name).glob("*.tar")) for key, _ in iter_samples(shard)]

    assert selection("a") != selection("c")
    assert Counter(selection("a")) != Counter(selection("c")), (
        "another seed must change which samples, not only order"
    )


_WRITER = """
import sys
from shards.mix import MixSettings
from shards import ShardSettings, mix_and_write
mix_and_write(sys.argv[1], sys.argv[2], MixSettings(total_samples=6000, seed=2), ShardSettings(max_samples=25, report=False))
"""


def test_killed_writer_rerun_gives_the_same_shards(task_root, tmp_path):
    settings, mix = ShardSettings(max_samples=25, report=False), MixSettings(total_samples=6000, seed=2)
    reference = tmp_path / "reference"
    mix_and_write(str(task_root), reference, mix, settings)

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(task_root), str(out)])
    deadline = time.monotonic() + 120
    while not (out / "mix-000003.tar").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the writer finished before it could be killed"
    partial = _tars(out)
    assert 0 < len(partial) < len(_tars(reference))
    assert all(partial[name] == data for name, data in _tars(reference).items() if name in partial)
    assert not (out / "manifest.json").exists()

    mix_and_write(str(task_root), out, mix, settings)
    assert _tars(out) == _tars(reference)
    assert not list(out.glob(".*tmp"))
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()


def test_a_directory_of_another_mixture_is_refused(task_root, tmp_path):
    mix_and_write(
        str(task_root), tmp_path, MixSettings(total_samples=300, seed=1), ShardSettings(max_samples=50)
    )
    with pytest.raises(ShardWriteError, match="other inputs or settings"):
        mix_and_write(
            str(task_root), tmp_path, MixSettings(total_samples=300, seed=2), ShardSettings(max_samples=50)
        )


def test_a_changed_image_stops_the_writer(tmp_path, task_tables):
    storage = task_tables(tmp_path, {"tiny": ("captioning", "en", 5)}, files_per_dataset=1)
    image = next(Path(storage.path("images")).glob("*"))
    image.write_bytes(image.read_bytes()[:-1] + b"\0")
    with pytest.raises(ShardWriteError, match="no longer matches"):
        mix_and_write(
            storage.root, tmp_path / "out", MixSettings(total_samples=5, shares={"captioning": 1.0})
        )
    assert not list((tmp_path / "out").glob("*.tar")) and not list((tmp_path / "out").glob(".*.tmp"))
