"""Conversations made by another stage about raw-shard images, as task tables: the OCR stage's hook.

The OCR task builder (in ``ocr/``) makes the conversations; this module joins them with the images
of the raw shard they were read from and writes a task table, so OCR samples enter the mixture as
tasks ``ocr_large`` / ``ocr_small`` like any other dataset:

>>> records = {"000012": ConversationRecord("000012", "zh", turns)}  # doctest: +SKIP
>>> write_conversation_table(storage, "wukong_ocr", "ocr_large", "wukong", "00000", records, drops)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from pipelines.layout.images import UnitImages
from pipelines.layout.raw import iter_raw_shard, raw_picture
from pipelines.layout.task_table import TaskSample, write_task_table
from pipelines.storage import Storage


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """A finished conversation about the image of sample ``key``."""

    key: str
    language: str
    conversations: list[dict[str, str]]
    hashes: tuple[int, int] | None = None  # the image's perceptual hashes, when the stage that decoded it made them


def samples_from_raw_shard(
    storage: Storage,
    dataset: str,
    task: str,
    raw_source: str,
    shard: str,
    records: Mapping[str, ConversationRecord],
    drops: Counter,
    hash_images: bool = False,
) -> list[TaskSample]:
    """Attach each record to its image in raw shard ``shard`` of ``raw_source``; ``hash_images``: each
    image's perceptual hash from the bytes read here (``image_phash``, for the decontamination stage)."""
    samples = []
    seen = set()
    images = UnitImages(storage, dataset, shard, hash_images=hash_images)
    for raw in iter_raw_shard(storage, raw_source, shard):
        record = records.get(raw.key)
        if record is None:
            continue
        seen.add(raw.key)
        picture = raw_picture(storage, raw, images, drops, record.hashes)
        if picture is None:
            continue
        samples.append(TaskSample(source=dataset, key=raw.key, task=task, language=record.language,
                                  images=[picture], conversations=record.conversations,
                                  url=str(raw.meta.get("url") or "")))
    drops["image_missing"] += len(set(records) - seen)
    images.commit()
    return samples


def write_conversation_table(
    storage: Storage,
    dataset: str,
    task: str,
    raw_source: str,
    shard: str,
    records: Mapping[str, ConversationRecord],
    drops: Counter | None = None,
    hash_images: bool = False,
) -> str:
    """Write the task table ``<root>/tasks/<dataset>/<shard>.parquet`` for conversations on one raw shard.

    ``drops`` carries the caller's own counters (OCR filters) into the table's metadata; ``hash_images``
    (a run that decontaminates) stores each image's perceptual hash, computed from the bytes this reads.
    """
    drops = Counter(drops or {})
    samples = samples_from_raw_shard(storage, dataset, task, raw_source, shard, records, drops, hash_images)
    return write_task_table(
        storage, dataset, shard, samples, drops, inputs=len(records) + sum(drops.values())
    )
