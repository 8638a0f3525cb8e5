"""Samples that arrive already as conversations: the OCR stage's, and InternVL JSONL sources.

**The OCR hook.** The OCR task builder (in ``ocr/``) makes the conversations; this module joins
them with the images of the raw shard they were read from and writes a task table, so OCR samples
enter the mixture as tasks ``ocr_large`` / ``ocr_small`` like any other dataset:

>>> records = {"000012": ConversationRecord("000012", "zh", turns)}  # doctest: +SKIP
>>> write_conversation_table(storage, "wukong_ocr", "ocr_large", "wukong", "00000", records, drops)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pipelines.storage import Storage
from pipelines.tasks.local import local_image
from pipelines.tasks.raw import iter_raw_shard, sha256_and_size
from pipelines.tasks.table import TaskSample, write_task_table


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """A finished conversation about the image of sample ``key``."""

    key: str
    language: str
    conversations: list[dict[str, str]]


def samples_from_raw_shard(
    storage: Storage,
    dataset: str,
    task: str,
    raw_source: str,
    shard: str,
    records: Mapping[str, ConversationRecord],
    drops: Counter,
) -> list[TaskSample]:
    """Attach each record to its image in raw shard ``shard`` of ``raw_source``."""
    samples = []
    seen = set()
    for raw in iter_raw_shard(storage, raw_source, shard):
        record = records.get(raw.key)
        if record is None:
            continue
        seen.add(raw.key)
        if raw.image_format not in ("jpg", "png"):
            drops[f"image_format_{raw.image_format}"] += 1
            continue
        sha, width, height = sha256_and_size(storage, raw)
        samples.append(
            TaskSample(
                source=dataset,
                key=raw.key,
                task=task,
                language=record.language,
                width=width,
                height=height,
                image_format=raw.image_format,
                image=raw.image,
                image_sha256=sha,
                conversations=record.conversations,
                url=str(raw.meta.get("url") or ""),
            )
        )
    drops["image_missing"] += len(set(records) - seen)
    return samples


def write_conversation_table(
    storage: Storage,
    dataset: str,
    task: str,
    raw_source: str,
    shard: str,
    records: Mapping[str, ConversationRecord],
    drops: Counter | None = None,
) -> str:
    """Write the task table ``<root>/tasks/<dataset>/<shard>.parquet`` for conversations on one raw shard.

    ``drops`` carries the caller's own counters (OCR filters) into the table's metadata.
    """
    drops = Counter(drops or {})
    samples = samples_from_raw_shard(storage, dataset, task, raw_source, shard, records, drops)
    return write_task_table(
        storage, dataset, shard, samples, drops, inputs=len(records) + sum(drops.values())
    )


def internvl_samples(
    storage: Storage,
    dataset: str,
    task: str,
    language: str,
    image_root: str,
    records: list[dict],
    drops: Counter,
) -> Iterator[TaskSample]:
    """Samples from the public InternVL annotation format (``id``, ``image``, ``conversations``)."""
    for record in records:
        turns = record.get("conversations") or []
        if len(turns) < 2 or "<image>" not in turns[0].get("value", ""):
            drops["no_image_conversation"] += 1
            continue
        image = local_image(storage, image_root, record["image"], drops)
        if image is None:
            continue
        first = turns[0]["value"].replace("<image>\n", "").replace("<image>", "").strip()
        turns = [{"from": "human", "value": f"<image>\n{first}"}] + [
            {"from": t["from"], "value": t["value"]} for t in turns[1:]
        ]
        yield TaskSample(
            source=dataset,
            key=str(record.get("id", record["image"])),
            task=task,
            language=language,
            width=image.width,
            height=image.height,
            image_format=image.image_format,
            image=image.ref,
            image_sha256=image.sha256,
            conversations=turns,
        )


def read_jsonl(storage: Storage, path: str) -> list[dict]:
    with storage.fs.open(path, "r", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
