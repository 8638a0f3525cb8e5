"""A mixture is a function of its settings and its set of samples: the same samples written in another
row order (download threads finish in any order), under another storage root, give byte-identical
shards and manifest; changed content gives another input fingerprint."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage
from shards.mix import MixSettings
from shards.write import ShardSettings, mix_and_write
from tests.shards.conftest import make_image

DATASETS = {"laion_en": ("captioning", "en", 30), "coyo-zh": ("captioning", "zh", 24),
            "objects365": ("detection", "en", 14)}
MIX = MixSettings(shares={"captioning": 0.7, "detection": 0.3}, total_samples=90, seed=5)
SHARDS = ShardSettings(max_samples=20, shards_per_task=2, report=False)


def _write(root: Path, order_seed: int | None, answer: str = "answer") -> Storage:
    """Each dataset's samples in two tables; ``order_seed`` shuffles the rows (and the image files'
    names), as another download would."""
    storage = Storage(str(root))
    (root / "images").mkdir(parents=True)
    index = 0
    for name, (task, language, count) in DATASETS.items():
        samples = []
        for i in range(count):
            index += 1
            data = make_image(index)
            path = root / "images" / f"{(index * 7919 + (order_seed or 0)) % 100_003}.jpg"
            path.write_bytes(data)
            samples.append(TaskSample(
                source=name, key=f"{i:05d}", task=task, language=language,
                images=[Picture(ImageRef(str(path), 0, len(data)), "jpg", hashlib.sha256(data).hexdigest(), 8, 8)],
                conversations=[human_turn(f"prompt {i}"), {"from": "gpt", "value": f"{name} {answer} {i}"}]))
        for unit, part in enumerate((samples[: count // 2], samples[count // 2:])):
            if order_seed is not None:
                random.Random(order_seed + unit).shuffle(part)
            write_task_table(storage, name, f"{unit:05d}", part)
    return storage


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_same_samples_in_another_order_and_root_give_identical_shards_and_manifest(tmp_path):
    first, second, changed = tmp_path / "a", tmp_path / "elsewhere" / "b", tmp_path / "c"
    manifests = []
    for root, order in ((first, None), (second, 11)):
        storage = _write(root, order)
        manifests.append(mix_and_write(storage, root / "shards", MIX, SHARDS))
    one, two = _shards(first / "shards"), _shards(second / "shards")
    assert sorted(one) == sorted(two) and "manifest.json" in one and len(one) >= 4
    assert one == two  # every tar and the manifest, byte for byte
    assert manifests[0]["inputs_fingerprint"] == manifests[1]["inputs_fingerprint"]

    storage = _write(changed, None, answer="other answer")  # same ids and images, other texts
    manifest = mix_and_write(storage, changed / "shards", MIX, SHARDS)
    assert manifest["inputs_fingerprint"] != manifests[0]["inputs_fingerprint"]
    assert manifest["plan_hash"] != manifests[0]["plan_hash"]
