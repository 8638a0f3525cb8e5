"""The task sample table: what the task builders write and the mixer reads.

One Parquet file per input unit (a raw img2dataset shard, or a chunk of an annotation file) under
``<root>/tasks/<dataset>/<unit>.parquet``, written under a temporary name and renamed into place
when complete; that rename is the completion marker a rerun trusts. ``<dataset>`` is the source
name, or ``<source>-<language>`` for the machine-translated variants of a source.

One row is one finished sample, already a conversation; the image is not copied but referenced
(``image_uri`` + byte range), so the shard writer copies the original bytes straight from the raw
shard or image folder. Columns (see :data:`SCHEMA`):

===================  =========================================================================
``id``               unique sample id, ``<dataset>-<key>`` in ``[A-Za-z0-9_-]`` (a WebDataset key)
``source``           the dataset name (the folder name)
``key``              the sample's key in its source (img2dataset key, COCO image id, ...)
``task``             ``captioning``, ``detection``, ``ocr_large``, ``ocr_small``, ...
``language``         language code of the conversation text
``images``           the sample's images in placeholder order (none for a text-only sample), each
                     ``{uri, offset, size, format, sha256, width, height}``: the file holding it
                     (relative to the storage root, or absolute), the byte range inside it (a tar
                     member's data, or the whole file), ``jpg``/``png``/``webp`` (the extension it
                     gets in the shards), the sha256 of those bytes, and its pixel size
``image_sha256``     what exact-duplicate removal compares: the image's sha256 for one image, a
                     sha256 over every image's for several, over the conversation for none
``conversations``    list of ``{"from": "human"|"gpt", "value": str}``, alternating, ending with a
                     gpt turn; one ``<image>`` placeholder per image (a single image's opens the
                     first turn, as ``<image>\\n``)
``url``              where the image came from ("" if not downloaded)
``original_language``  the language the annotation was written in (``en`` for a translation)
``original_text``    "" unless translated: the English answer the translation replaces
``image_phash``      each image's 64-bit pHash (:mod:`pipelines.phash`, as int64) when the stage that
                     read the images hashed them (a run that decontaminates); else null
``image_dhash``      each image's 64-bit dHash, which confirms a pHash match, with ``image_phash``
===================  =========================================================================

The file's Parquet metadata holds the builder's counters: ``vlmix.drops`` (JSON ``{reason: n}``,
every input record not turned into a row), ``vlmix.inputs`` (records read) and ``vlmix.content``
(:func:`content_fingerprint` of its rows). Rows are in ``id`` order. Other stages (the
OCR task builder in ``ocr/``) write their task samples with :func:`write_task_table` and flow into
the mixture like any other dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from pipelines.phash import to_signed
from pipelines.storage import Storage

TASKS_DIR = "tasks"
DROPS_KEY = b"vlmix.drops"
INPUTS_KEY = b"vlmix.inputs"
CONTENT_KEY = b"vlmix.content"

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
IMAGE = pa.struct(
    [
        ("uri", pa.string()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("format", pa.string()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("key", pa.string()),
        ("task", pa.string()),
        ("language", pa.string()),
        ("images", pa.list_(IMAGE)),
        ("image_sha256", pa.string()),
        ("conversations", pa.list_(TURN)),
        ("url", pa.string()),
        ("original_language", pa.string()),
        ("original_text", pa.string()),
        ("image_phash", pa.list_(pa.int64())),
        ("image_dhash", pa.list_(pa.int64())),
    ]
)
# What the mixer reads of every row to plan a mixture; the rest is read only for selected rows.
PLAN_COLUMNS = ["id", "task", "language", "image_sha256"]

# Formats the shards carry as they are (the trainer and InternVL's loader read each); others are converted.
IMAGE_FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}
PLACEHOLDER = "<image>"
_KEY_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where an image's original bytes are: ``size`` bytes at ``offset`` of the file ``uri``."""

    uri: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Picture:
    """One image of a sample: where its bytes are, their format and sha256, its pixel size."""

    ref: ImageRef
    format: str
    sha256: str
    width: int
    height: int
    hashes: tuple[int, int] | None = None  # its (pHash, dHash) (pipelines.phash), when the stage that read it hashed it

    def to_row(self) -> dict:
        return {"uri": self.ref.uri, "offset": self.ref.offset, "size": self.ref.size, "format": self.format,
                "sha256": self.sha256, "width": self.width, "height": self.height}


@dataclass(slots=True)
class TaskSample:
    """One row of the task sample table (see the module docstring for each field)."""

    source: str
    key: str
    task: str
    language: str
    images: list[Picture]
    conversations: list[dict[str, str]]
    url: str = ""
    original_language: str = ""
    original_text: str = ""
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            self.id = sample_id(self.source, self.key)
        if not self.original_language:
            self.original_language = self.language


def sample_id(dataset: str, key: str) -> str:
    """A WebDataset-safe, unique id: ``<dataset>-<key>``, with a hash suffix if the key had to change.

    WebDataset splits a member name at its first dot, so ids keep to ``[A-Za-z0-9_-]``.
    """
    safe = key if _KEY_SAFE.match(key) else re.sub(r"[^A-Za-z0-9_-]", "_", key)
    if safe != key:
        safe += "-" + hashlib.blake2b(key.encode(), digest_size=4).hexdigest()
    return f"{_safe_dataset(dataset)}-{safe}"


def _safe_dataset(name: str) -> str:
    if not _KEY_SAFE.match(name):
        raise ValueError(f"dataset name {name!r} must use only letters, digits, '_' and '-'")
    return name


def human_turn(prompt: str) -> dict[str, str]:
    """The first human turn: the image placeholder, then the instruction."""
    return {"from": "human", "value": f"<image>\n{prompt}"}


def table_path(storage: Storage, dataset: str, unit: str) -> str:
    return storage.path(TASKS_DIR, dataset, f"{unit}.parquet")


def write_task_table(
    storage: Storage,
    dataset: str,
    unit: str,
    samples: Iterable[TaskSample],
    drops: Mapping[str, int] | None = None,
    inputs: int | None = None,
) -> str:
    """Write one unit's task samples (and its drop counters) to ``<root>/tasks/<dataset>/<unit>.parquet``.

    The file appears only when complete. Returns its path.

    >>> write_task_table(storage, "laion_en", "00000", samples, drops={"empty_caption": 3})  # doctest: +SKIP
    """
    # Rows in id order, whatever order the builder met them in (download threads finish in any order):
    # a table is a function of its set of samples.
    rows = sorted((_row(sample) for sample in samples), key=_canonical)
    for row in rows:
        if row["source"] != dataset:
            raise ValueError(f"sample {row['id']!r} has source {row['source']!r}, written into {dataset!r}")
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    metadata = {
        DROPS_KEY: json.dumps(dict(sorted(Counter(drops or {}).items()))).encode(),
        INPUTS_KEY: str(inputs if inputs is not None else len(rows)).encode(),
        CONTENT_KEY: content_fingerprint(rows).encode(),
    }
    table = table.replace_schema_metadata(metadata)
    path = table_path(storage, dataset, unit)
    storage.write_parquet(path, table)
    return path


def conversation_problem(turns: list[dict], images: int) -> str | None:
    """Why ``turns`` is no valid conversation about ``images`` images (a drop reason), or None."""
    if len(turns) < 2 or len(turns) % 2:
        return "bad_conversation"
    for index, turn in enumerate(turns):
        if turn.get("from") != ("human", "gpt")[index % 2] or not isinstance(turn.get("value"), str):
            return "bad_conversation"
    if sum(turn["value"].count(PLACEHOLDER) for turn in turns) != images:
        return "image_placeholder_mismatch"
    if images == 1 and not turns[0]["value"].startswith(PLACEHOLDER + "\n"):
        return "image_placeholder_mismatch"
    return None


def content_sha256(images: list[Picture], conversations: list[dict]) -> str:
    """The duplicate-removal key: see ``image_sha256`` in the module docstring."""
    if len(images) == 1:
        return images[0].sha256
    if images:
        return hashlib.sha256("|".join(image.sha256 for image in images).encode()).hexdigest()
    text = json.dumps(conversations, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _row(sample: TaskSample) -> dict:
    for image in sample.images:
        if image.format not in IMAGE_FORMATS.values():
            raise ValueError(f"sample {sample.id!r}: image format must be one of jpg, png, webp, got {image.format!r}")
    problem = conversation_problem(sample.conversations, len(sample.images))
    if problem:
        raise ValueError(f"sample {sample.id!r}: {problem} ({len(sample.images)} images, turns {sample.conversations!r:.200})")
    row = asdict(sample)
    row["images"] = [image.to_row() for image in sample.images]
    row["image_sha256"] = content_sha256(sample.images, sample.conversations)
    hashed = [image.hashes for image in sample.images]
    every = bool(hashed) and None not in hashed
    row["image_phash"] = [to_signed(h[0]) for h in hashed] if every else None
    row["image_dhash"] = [to_signed(h[1]) for h in hashed] if every else None
    return row


def _canonical(row: dict) -> tuple[str, str]:
    """A row's sort key and content: its id, then its JSON without where its images are stored (the
    byte range in a raw shard depends on download order, the bytes' sha256 does not)."""
    images = [{k: image[k] for k in ("format", "sha256", "width", "height")} for image in row["images"]]
    return row["id"], json.dumps({**row, "images": images}, ensure_ascii=False, sort_keys=True)


def content_fingerprint(rows: Iterable[dict]) -> str:
    """sha256 of a table's rows (as :data:`SCHEMA` dicts) in id order, image locations left out: the
    same set of samples gives the same fingerprint whatever the row order or the storage root."""
    digest = hashlib.sha256()
    for _, text in sorted(_canonical(row) for row in rows):
        digest.update(text.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def list_task_tables(storage: Storage, datasets: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Complete task tables per dataset: ``{dataset: [path, ...]}``, names and paths sorted."""
    found: dict[str, list[str]] = {}
    for path in storage.glob(storage.path(TASKS_DIR, "*", "*.parquet")):
        dataset = path.rstrip("/").split("/")[-2]
        found.setdefault(dataset, []).append(path)
    if datasets is not None:
        wanted = list(datasets)
        missing = [name for name in wanted if name not in found]
        if missing:
            raise FileNotFoundError(
                f"no task tables for datasets {missing} under {storage.path(TASKS_DIR)}; found {sorted(found)}"
            )
        found = {name: found[name] for name in wanted}
    return {name: sorted(paths) for name, paths in sorted(found.items())}


def read_counters(schema: pa.Schema) -> tuple[dict[str, int], int]:
    """The drop counters and input count stored in a task table's metadata."""
    metadata = schema.metadata or {}
    drops = json.loads(metadata.get(DROPS_KEY, b"{}"))
    return {str(k): int(v) for k, v in drops.items()}, int(metadata.get(INPUTS_KEY, b"0"))
