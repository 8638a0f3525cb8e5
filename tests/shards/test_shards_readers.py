"""Our shards read intact by the WebDataset readers users have: webdataset, ray.data, datasets."""

from __future__ import annotations

import hashlib
import json

import pytest

from shards import ShardSettings, mix_and_write
from shards.mix import MixSettings
from shards.reader import iter_samples


@pytest.fixture(scope="module")
def shard_dir(task_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("readers")
    mix_and_write(
        str(task_root),
        out,
        MixSettings(total_samples=700, seed=4),
        ShardSettings(max_samples=150, report=False),
    )
    return out


@pytest.fixture(scope="module")
def expected(shard_dir):
    """key -> (image extension, image sha256, parsed JSON), from our own reader."""
    samples = {}
    for tar in sorted(shard_dir.glob("*.tar")):
        for key, members in iter_samples(tar):
            extension = "png" if "png" in members else "jpg"
            samples[key] = (
                extension,
                hashlib.sha256(members[extension]).hexdigest(),
                json.loads(members["json"]),
            )
    assert len(samples) == 700 and {e for e, _, _ in samples.values()} == {"jpg", "png"}
    return samples


def _tars(shard_dir):
    return [str(p) for p in sorted(shard_dir.glob("*.tar"))]


def test_webdataset_reads_every_sample(shard_dir, expected):
    import webdataset

    got = {}
    for sample in webdataset.WebDataset(_tars(shard_dir), shardshuffle=False):
        extension = "png" if "png" in sample else "jpg"
        got[sample["__key__"]] = (
            extension,
            hashlib.sha256(sample[extension]).hexdigest(),
            json.loads(sample["json"]),
        )
    assert got == expected


def test_huggingface_datasets_reads_every_sample(shard_dir, expected, tmp_path):
    import datasets

    from shards.hf import features

    dataset = datasets.load_dataset(
        "webdataset",
        data_files={"train": _tars(shard_dir)},
        split="train",
        features=features(),
        cache_dir=str(tmp_path),
    )
    dataset = dataset.cast_column("jpg", datasets.Image(decode=False)).cast_column(
        "png", datasets.Image(decode=False)
    )
    got = {}
    for row in dataset:
        extension = "png" if row["png"] is not None else "jpg"
        got[row["__key__"]] = (extension, hashlib.sha256(row[extension]["bytes"]).hexdigest(), row["json"])
    assert got == expected


@pytest.mark.slow
def test_ray_data_reads_every_sample(shard_dir, expected):
    from pipelines.runtime import ensure_ray

    ensure_ray(None, num_cpus=1)
    import ray

    got = {}
    for row in ray.data.read_webdataset(_tars(shard_dir), decoder=None).iter_rows():
        extension = "png" if isinstance(row.get("png"), bytes) else "jpg"
        got[row["__key__"]] = (extension, hashlib.sha256(row[extension]).hexdigest(), json.loads(row["json"]))
    assert got == expected
