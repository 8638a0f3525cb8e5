"""A mixture is a function of its settings and its set of samples: the same samples written in another
row order (download threads finish in any order), under another storage root, give byte-identical
shards and manifest; changed content gives another input fingerprint."""

from __future__ import annotations

import hashlib
import random

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage
from shards.mix import MixSettings
from shards.write import ShardSettings, mix_and_write
from tests.shards.conftest import make_image

DATASETS = {"laion_en": ("captioning", "en", 12), "coyo-zh": ("captioning", "zh", 10),
            "objects365": ("detection", "en", 6)}
MIX = MixSettings(shares={"captioning": 0.7, "detection": 0.3}, total_samples=40, seed=5)
SHARDS = ShardSettings(max_samples=8, shards_per_task=2, report=False)


def _write(storage: Storage, order_seed: int | None, answer: str = "answer") -> Storage:
    """Each dataset's samples in two tables; ``order_seed`` shuffles the rows (and the image files'
    names), as another download would. Images are files under the root, named relative to it."""
    index = 0
    for name, (task, language, count) in DATASETS.items():
        samples = []
        for i in range(count):
            index += 1
            data = make_image(index)
            path = f"images/{(index * 7919 + (order_seed or 0)) % 100_003}.jpg"
            storage.write_bytes(storage.path(path), data)
            samples.append(TaskSample(
                source=name, key=f"{i:05d}", task=task, language=language,
                images=[Picture(ImageRef(path, 0, len(data)), "jpg", hashlib.sha256(data).hexdigest(), 8, 8)],
                conversations=[human_turn(f"prompt {i}"), {"from": "gpt", "value": f"{name} {answer} {i}"}]))
        for unit, part in enumerate((samples[: count // 2], samples[count // 2:])):
            if order_seed is not None:
                random.Random(order_seed + unit).shuffle(part)
            write_task_table(storage, name, f"{unit:05d}", part)
    return storage


def _shards(storage: Storage) -> dict[str, bytes]:
    paths = storage.glob(storage.path("shards", "*"))
    return {path.rsplit("/", 1)[-1]: storage.fs.cat_file(path) for path in sorted(paths)}


def _mix(storage: Storage) -> tuple[dict, dict[str, bytes]]:
    manifest = mix_and_write(storage, storage.uri(storage.path("shards")), MIX, SHARDS)
    return manifest, _shards(storage)


def test_same_samples_in_another_order_and_root_give_identical_shards_and_manifest(tmp_path):
    manifest, shards = _mix(_write(Storage(str(tmp_path / "a")), None))
    assert "manifest.json" in shards and len(shards) >= 4
    again, other = _mix(_write(Storage(str(tmp_path / "elsewhere" / "b")), 11))
    assert other == shards  # every tar and the manifest, byte for byte
    assert again["inputs_fingerprint"] == manifest["inputs_fingerprint"]

    changed, _ = _mix(_write(Storage(str(tmp_path / "c")), None, answer="other answer"))  # same ids, other texts
    assert changed["inputs_fingerprint"] != manifest["inputs_fingerprint"]
    assert changed["plan_hash"] != manifest["plan_hash"]


def test_the_same_samples_on_s3_give_the_same_bytes(tmp_path, loopback_s3):
    """The storage root on a real S3 API (moto's server on loopback), the rows in yet another order."""
    from s3fs import S3FileSystem

    S3FileSystem().mkdir("mixes")
    # Options, not only the environment: Ray workers started before the server open the root too.
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": loopback_s3, "region_name": "us-east-1"}}
    _, on_s3 = _mix(_write(Storage("s3://mixes/run", options), 23))
    _, local = _mix(_write(Storage(str(tmp_path / "local")), None))
    assert on_s3 == local
