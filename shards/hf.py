"""Reading the shards with Hugging Face ``datasets``: every image and turn of every sample shape.

>>> from shards.hf import load_shards
>>> ds = load_shards("out/shards")                       # doctest: +SKIP  (a datasets.Dataset)
>>> ds[0]["images"], ds[0]["json"]["conversations"]      # doctest: +SKIP  ([PIL images], [turns])
>>> ds = load_shards("s3://bucket/run/shards", streaming=True)  # doctest: +SKIP  (an IterableDataset)

One schema for single-image, multi-image, multi-turn and text-only samples (:mod:`shards.rows`,
:func:`features`): ``__key__``, ``__url__``, ``json`` (the sample's JSON: ``conversations`` as
written, every turn) and ``images`` (``datasets.List(datasets.Image())``: every image in
``<image>`` order, ``[]`` for text only; PIL images, or ``{"bytes", "path"}`` with
``ds.cast_column("images", datasets.List(datasets.Image(decode=False)))``).

Why not ``datasets.load_dataset("webdataset", ...)``: its builder makes one column per member
extension, so a second image (``<key>.1.jpg``) is a ``1.jpg`` column. Without ``features`` it
infers the columns from the first five samples and refuses shards whose samples differ in
members (any mixture with several shapes); with ``features`` that do not name every such column
it drops the extra images without an error. So :func:`load_shards` reads the shards the
manifest lists with vlmix's own tar reader inside ``Dataset.from_generator`` (one generator
shard per tar, so ``num_proc`` reads tars in parallel) and gives the row of :mod:`shards.rows`.
The cache is keyed by the shards' sha256 from the manifest, so rewritten shards are read again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines._imports import require
from pipelines.storage import Storage
from shards.location import is_local, open_directory
from shards.manifest import read_manifest
from shards.reader import iter_samples
from shards.rows import sample_row


def features():
    """The ``datasets.Features`` of a row (see :mod:`shards.rows`; the JSON as :mod:`shards.schema`)."""
    datasets = require("datasets", "mix")
    text = datasets.Value("string")
    integer = datasets.Value("int64")
    record = {
        "id": text,
        "source": text,
        "task": text,
        "language": text,
        "width": integer,
        "height": integer,
        "conversations": datasets.List({"from": text, "value": text}),
        "meta": {
            "source_key": text,
            "url": text,
            "image_sha256": text,
            "images": datasets.List({"member": text, "width": integer, "height": integer, "sha256": text}),
            "repeat": integer,
            "original_language": text,
            "original_text": text,
        },
    }
    return datasets.Features(
        {"__key__": text, "__url__": text, "json": record, "images": datasets.List(datasets.Image())}
    )


def generate_rows(
    shards: list[dict[str, str]], storage_options: dict[str, Any] | None = None
) -> Iterator[dict]:
    """The rows of ``shards`` (``[{"uri", "sha256"}]``), in order: the generator of :func:`load_shards`."""
    for shard in shards:
        storage = Storage(shard["uri"], storage_options)
        fs = None if is_local(storage) else storage.fs
        for key, members in iter_samples(storage.root, fs):
            row = sample_row({**members, "__key__": key, "__url__": shard["uri"]})
            members_of = [entry["member"] for entry in row["json"]["meta"]["images"]]
            row["images"] = [
                {"bytes": data, "path": f"{key}.{member}"}
                for data, member in zip(row["images"], members_of, strict=True)
            ]
            yield row


def load_shards(
    directory: str | Path | Storage,
    storage_options: dict[str, Any] | None = None,
    *,
    streaming: bool = False,
    num_proc: int | None = None,
    cache_dir: str | None = None,
):
    """The mixture at ``directory`` (local or fsspec URI) as a ``datasets.Dataset`` of :func:`features`.

    ``streaming=True`` gives an ``IterableDataset`` that reads the tars as it is iterated (no
    Arrow cache). Only the shards ``manifest.json`` lists are read, in its order.
    """
    datasets = require("datasets", "mix")
    storage = open_directory(directory, storage_options)
    shards = [
        {"uri": storage.uri(storage.path(entry["name"])), "sha256": entry.get("sha256", "")}
        for entry in read_manifest(storage)["shards"]
    ]
    kwargs = {"shards": shards, "storage_options": storage.options or None}
    if streaming:
        return datasets.IterableDataset.from_generator(generate_rows, features=features(), gen_kwargs=kwargs)
    return datasets.Dataset.from_generator(
        generate_rows, features=features(), gen_kwargs=kwargs, num_proc=num_proc, cache_dir=cache_dir
    )
