"""OCR task samples: the OCR corpus turned into InternVL conversations (task ``ocr_large``).

Two variants, chosen per sample with a generator seeded by (seed, dataset, key):

- transcription: a prompt from the language's pool, answered by the kept lines in reading
  order, one per line;
- grounded: each line answered as ``<ref>text</ref><box>[[x1, y1, x2, y2]]</box>`` (or
  ``<quad>[[x1, y1, ..., x4, y4]]</quad>``), coordinates scaled to 0..1000 of the image size.

The record (see ocr/README.md) is what the mixer consumes; :func:`write_ocr_task_tables` hands
the conversations to :func:`pipelines.layout.conversations.write_conversation_table`, which joins them with the
images of the raw shard and writes the task table.
"""

from __future__ import annotations

import random
from typing import Literal

import pyarrow as pa
from pydantic import Field

from pipelines._model import ConfigModel
from pipelines.phash import to_unsigned

from . import corpus
from .prompts import pool


class OcrTaskStyle(ConfigModel):
    """How OCR corpus rows become conversations: what a mixture config sets (``ocr_tasks``)."""

    grounded_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Share of samples (0..1) given the grounded variant instead of transcription.",
    )
    box_format: Literal["box", "quad"] = Field(
        "box", description="Grounded variant: axis-aligned <box> or the line's <quad>rilateral."
    )


class OcrTaskSettings(OcrTaskStyle):
    """The style plus what a run knows of the source and the mixture: its task, the seed, the prompt
    pools of the configured languages (the flow derives these; a config never sets them)."""

    task: str = Field("ocr_large", description="Task name of the samples in the mixture.")
    seed: int = Field(0, description="Seed of the prompt and variant draws.")
    prompts: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="Instruction pools by kind (transcribe, grounded), then language; the built-in "
        "ones (en, zh) where absent. The flow fills it from the config's `languages`.",
    )


def scale(value: float, size: int) -> int:
    """A pixel coordinate as an integer in 0..1000 of ``size`` pixels."""
    return min(1000, max(0, round(value / max(1, size) * 1000)))


def grounded_line(line: dict, width: int, height: int, box_format: str) -> str:
    quad = line["quad"]
    if box_format == "quad":
        coords = ", ".join(f"{scale(x, width)}, {scale(y, height)}" for x, y in quad)
        return f"<ref>{line['text']}</ref><quad>[[{coords}]]</quad>"
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    box = [scale(min(xs), width), scale(min(ys), height), scale(max(xs), width), scale(max(ys), height)]
    return f"<ref>{line['text']}</ref><box>[{box}]</box>"


def _prompts(settings: OcrTaskSettings, kind: str, language: str) -> list[str]:
    """The configured pool of ``kind`` for ``language``, else the built-in one (a clear error if none)."""
    return settings.prompts.get(kind, {}).get(language) or pool(kind, language)


def ocr_task_record(row: dict, dataset: str, settings: OcrTaskSettings) -> dict:
    """One kept OCR corpus row (a dict with :data:`ocr.corpus.SCHEMA` columns) as a task record."""
    rng = random.Random(f"{settings.seed}:{dataset}:{row['key']}")
    grounded = rng.random() < settings.grounded_fraction
    language = row["language"]
    if grounded:
        prompt = rng.choice(_prompts(settings, "grounded", language))
        answer = "\n".join(
            grounded_line(ln, row["width"], row["height"], settings.box_format) for ln in row["lines"]
        )
    else:
        prompt = rng.choice(_prompts(settings, "transcribe", language))
        answer = "\n".join(ln["text"] for ln in row["lines"])
    scores = [ln["score"] for ln in row["lines"]]
    return {
        "id": f"{dataset}-{row['key']}",
        "key": row["key"],
        "source": dataset,
        "task": settings.task,
        "language": language,
        "width": row["width"],
        "height": row["height"],
        "image": {
            "uri": row["image_uri"],
            "offset": row["image_offset"],
            "size": row["image_size"],
            "format": row["image_format"],
        },
        "image_sha256": row["image_sha256"],
        "url": row["url"],
        "conversations": [{"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": answer}],
        "meta": {
            "variant": "grounded" if grounded else "transcription",
            "box_format": settings.box_format if grounded else None,
            "lines": len(row["lines"]),
            "mean_score": round(sum(scores) / len(scores), 4) if scores else 0.0,
            "engine": row["engine"],
            "engine_version": row["engine_version"],
            "det_model": row["det_model"],
            "rec_model": row["rec_model"],
            "raw_source": row["source"],
        },
    }


def ocr_task_records(table: pa.Table, dataset: str, settings: OcrTaskSettings | None = None) -> list[dict]:
    """Task records for the kept rows of one OCR corpus table (dropped rows have a ``drop_reason``)."""
    settings = settings or OcrTaskSettings()
    return [
        ocr_task_record(row, dataset, settings) for row in table.to_pylist() if row["drop_reason"] is None
    ]


def corpus_hashes(table: pa.Table) -> dict[str, tuple[int, int]]:
    """key -> (pHash, dHash) as unsigned 64-bit integers, for the rows of an OCR corpus table that carry both;
    none for a corpus written without the columns (an older run)."""
    if "image_phash" not in table.column_names or "image_dhash" not in table.column_names:
        return {}
    rows = zip(table.column("key").to_pylist(), table.column("image_phash").to_pylist(),
               table.column("image_dhash").to_pylist(), strict=True)
    return {key: (to_unsigned(phash), to_unsigned(dhash)) for key, phash, dhash in rows
            if phash is not None and dhash is not None}


def write_ocr_task_tables(
    root: str,
    source: str,
    dataset: str,
    settings: OcrTaskSettings | None = None,
    storage_options: dict | None = None,
    perceptual_hash: bool = False,
) -> list[str]:
    """Write ``<root>/tasks/<dataset>/<shard>.parquet`` for every finished OCR corpus shard of ``source``.

    The OCR drop counters of each shard travel into its task table's metadata. ``perceptual_hash`` (a run
    that decontaminates): each image's hashes, those the OCR actor made from the picture it decoded
    (the corpus's ``image_phash`` / ``image_dhash``), so no image is decoded again; for rows without them (a
    corpus of an older run, written without the columns), from the bytes read here to join the conversations.
    """
    from pipelines.layout.conversations import ConversationRecord, write_conversation_table
    from pipelines.storage import Storage

    storage = Storage(root, storage_options)
    settings = settings or OcrTaskSettings()
    written = []
    for shard in sorted(corpus.finished_shards(storage, source)):
        table = corpus.read_shard(storage, source, shard)
        known = corpus_hashes(table)
        records = {
            r["key"]: ConversationRecord(r["key"], r["language"], r["conversations"], known.get(r["key"]))
            for r in ocr_task_records(table, dataset, settings)
        }
        drops = corpus.shard_stats(table)["dropped"]
        drops = {f"ocr_{reason}": n for reason, n in drops.items()}
        written.append(
            write_conversation_table(storage, dataset, settings.task, source, shard, records, drops,
                                     hash_images=perceptual_hash)
        )
    return written
