"""A persistent translation cache: Parquet shards under a storage root (local disk or s3://).

Keyed by (source text, target language, model, prompt version): the last three name the folder,
``<cache root>/<target>/<prompt version>/<model>/``, and the text is looked up by its sha256. Each
finished part adds one shard, written under a temporary name and renamed, so a crash leaves no half
shard and concurrent writers never touch the same object. The model's raw answer is stored, not
the verdict of validation: answers are re-checked on reuse, so changing a validation setting never
needs the cache emptied. A change of model or prompt wording starts a new folder.

Lookups scan the folder's shards for the wanted hashes (pyarrow filters them column-wise); at very
large scale, compact a folder's shards into a few hash-sorted files so that row-group statistics
prune the scan.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipelines.storage import Storage

SCHEMA = pa.schema(
    [
        ("hash", pa.string()),  # sha256 hex of the source text
        ("source_text", pa.string()),
        ("output", pa.string()),  # the model's answer, unvalidated
        ("finish_reason", pa.string()),
        ("target_language", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
    ]
)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    output: str
    finish_reason: str | None


class TranslationCache:
    """Answers of one model under one prompt version, per target language."""

    def __init__(self, storage: Storage, root: str, model: str, prompt_version: str):
        self.storage = storage
        self.root = root.rstrip("/")
        self.model = model
        self.prompt_version = prompt_version

    def folder(self, target: str) -> str:
        return posixpath.join(self.root, target, self.prompt_version, _slug(self.model))

    def lookup(self, target: str, hashes: list[str]) -> dict[str, CachedAnswer]:
        """The cached answers among ``hashes`` (sha256 hex of source texts)."""
        shards = self.storage.glob(posixpath.join(self.folder(target), "*.parquet"))
        if not shards or not hashes:
            return {}
        dataset = ds.dataset(shards, format="parquet", filesystem=self.storage.fs, schema=SCHEMA)
        table = dataset.to_table(
            columns=["hash", "output", "finish_reason"], filter=pc.field("hash").isin(pa.array(hashes))
        )
        found = {}
        for key, output, finish in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
            found[key] = CachedAnswer(output, finish)
        return found

    def add(self, target: str, entries: list[tuple[str, str, CachedAnswer]]) -> None:
        """Store ``(hash, source text, answer)`` entries as one new shard."""
        if not entries:
            return
        entries = sorted(entries)  # hash order: row-group statistics can prune lookups
        n = len(entries)
        table = pa.table(
            {
                "hash": [e[0] for e in entries],
                "source_text": [e[1] for e in entries],
                "output": [e[2].output for e in entries],
                "finish_reason": [e[2].finish_reason for e in entries],
                "target_language": [target] * n,
                "model": [self.model] * n,
                "prompt_version": [self.prompt_version] * n,
            },
            schema=SCHEMA,
        )
        path = posixpath.join(self.folder(target), f"{uuid.uuid4().hex}.parquet")
        self.storage.write_parquet(path, table)


def _slug(model: str) -> str:
    """A folder name for a model id or path, unique even when two paths end alike."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/"))[-60:]
    return f"{readable}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def open_cache(storage: Storage, settings, model: str, prompt_version: str | None = None) -> TranslationCache | None:
    """The cache a run with ``settings`` (:class:`~translate.settings.TranslateSettings`) uses for
    ``model`` (and the Figure-5 prompt, or ``prompt_version``'s): under ``settings.cache_root``, else
    ``<root>/translate/_cache``; None when it is off."""
    from translate.prompt import PROMPT_VERSION
    from translate.table import TRANSLATE_DIR

    if not settings.cache:
        return None
    root = settings.cache_root
    cache_storage = Storage(root, storage.options) if root else storage
    return TranslationCache(cache_storage, cache_storage.root if root else storage.path(TRANSLATE_DIR, "_cache"),
                            model, prompt_version or PROMPT_VERSION)
