"""The OCR stage on the executor's actor pool: each actor writes its shards' corpus files itself, the
driver gets counters only, a rerun skips done shards, and a broken shard fails the stage by name."""

from __future__ import annotations

import os
import sys
import tarfile
from collections import Counter

import pyarrow.parquet as pq
import pytest
from ocr_synth import heldout_set, jpeg_bytes, write_raw_shard

from ocr.settings import OcrSettings
from ocr.stage import OcrContext, OcrStage, run_ocr_stage
from pipelines.stage import execute

pytestmark = pytest.mark.slow

SETTINGS = OcrSettings(model="PP-OCRv6_tiny", concurrency=2, batch_size=2)


class WhoWrote(OcrStage):
    """The OCR stage, also counting the process that wrote each corpus file."""

    def run_unit(self, unit, ctx, engine):
        counters = super().run_unit(unit, ctx, engine)
        counters.tallies["writer_pid"] = Counter({os.getpid(): 1})
        return counters


@pytest.fixture
def ray_workers(local_ray):
    """Local Ray; its workers unpickle this module's stage by value (tests/ocr is not importable there)."""
    import ray.cloudpickle

    from pipelines.runtime import ensure_ray

    ensure_ray(None, num_cpus=2)  # again, should a module before this one have shut it down
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_actors_write_every_corpus_file_the_driver_gets_counters_and_a_rerun_skips(ray_workers, tmp_path):
    raw = tmp_path / "raw" / "signs"
    pages = heldout_set("en", "clean", pages=3)
    keys = {f"{i:05d}": write_raw_shard(raw, i, [jpeg_bytes(pages[i].image), b"not an image"]) for i in range(3)}

    report = execute(WhoWrote("signs", "en", SETTINGS), OcrContext(str(tmp_path)))

    out = tmp_path / "ocr" / "signs"
    assert sorted(p.stem for p in out.glob("*.parquet")) == sorted(keys)
    for shard, shard_keys in keys.items():
        assert pq.read_table(out / f"{shard}.parquet").column("key").to_pylist() == shard_keys
    assert (report.units, report.skipped, report.counters.samples) == (3, 0, 6)
    assert report.counters.drops["undecodable_image"] == 3
    writers = report.counters.tallies["writer_pid"]
    assert sum(writers.values()) == 3 and os.getpid() not in writers, "the actors wrote the corpus files"
    node = ray_workers.get_runtime_context().get_node_id()
    assert report.counters.tallies["nodes"] == {node: 6}
    # What reached the driver: a few numbers per shard, no rows.
    assert set(report.counters.to_json()) == {"samples", "drops", "tallies"}

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    again = execute(WhoWrote("signs", "en", SETTINGS), OcrContext(str(tmp_path)))
    assert (again.units, again.skipped, again.counters.samples) == (3, 3, 0)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == mtimes
    stats = run_ocr_stage(str(tmp_path), "signs", "en", SETTINGS)
    assert (stats["raw_shards"], stats["shards_this_run"], stats["images"], stats["nodes"]) == (3, 0, 6, {})


def test_a_broken_shard_fails_the_stage_at_once_naming_the_shard(ray_workers, tmp_path):
    raw = tmp_path / "raw" / "signs"
    page = jpeg_bytes(heldout_set("en", "clean", pages=1)[0].image)
    for i in range(3):
        write_raw_shard(raw, i, [page, page])
    tar = raw / "00001.tar"
    tar.write_bytes(tar.read_bytes()[: page.__len__() // 2 + 512])  # a copy cut short inside an image

    with pytest.raises((tarfile.TarError, ValueError)) as failure:
        run_ocr_stage(str(tmp_path), "signs", "en", SETTINGS.model_copy(update={"concurrency": 1}))

    assert "stage 'ocr': unit '00001' of signs failed" in failure.value.__notes__
    out = tmp_path / "ocr" / "signs"
    assert sorted(p.name for p in out.glob("*.parquet")) == ["00000.parquet"], "shards after it were not run"
    assert not list(out.glob("*.tmp-*"))
