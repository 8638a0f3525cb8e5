"""Reading the shards with ``ray.data``: every image and turn of every sample shape.

>>> from shards.ray_data import read_shards
>>> ds = read_shards("out/shards")                        # doctest: +SKIP  (a ray.data.Dataset)
>>> row = ds.take(1)[0]; row["images"], row["json"]["conversations"]  # doctest: +SKIP

This is ``ray.data.read_webdataset`` itself, given :func:`decode_sample` as its ``decoder``.
Left to its defaults, ``read_webdataset`` makes one column per member extension (``jpg``,
``1.png``...; NaN where a sample has no such member) and leaves the JSON as bytes: a reader
would have to know every member name a mixture uses. The decoder turns each sample into the
row of :mod:`shards.rows`, the same for single-image, multi-image, multi-turn and text-only
samples: ``__key__``, ``__url__``, ``json`` (dict, every turn in ``conversations``) and
``images`` (every image's bytes in ``<image>`` order, ``[]`` for text only). Decode the bytes
in a ``map`` of your own (``PIL.Image.open(io.BytesIO(data))``), where the training code needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.storage import Storage
from shards.location import is_local, open_directory
from shards.manifest import read_manifest
from shards.rows import sample_row


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """The ``decoder`` for ``ray.data.read_webdataset``: one sample's members -> the row of :mod:`shards.rows`."""
    row = sample_row(sample)
    # read_webdataset unwraps every one-element list value into its element (its own convention
    # for repeated members); a tuple is kept, and arrives as a list.
    row["images"] = tuple(row["images"])
    return row


def read_shards(
    directory: str | Path | Storage, storage_options: dict[str, Any] | None = None, **read_kwargs
):
    """The mixture at ``directory`` (local or fsspec URI) as a ``ray.data.Dataset`` of :mod:`shards.rows`.

    Only the shards ``manifest.json`` lists are read. ``read_kwargs`` go to ``read_webdataset``
    (``override_num_blocks``, ``ray_remote_args``...). On object storage Ray reads through the
    directory's fsspec filesystem, which travels to the read tasks with ``storage_options``
    (``endpoint_url``...); what comes from the environment instead (``AWS_ENDPOINT_URL``,
    credentials) must be set where the Ray workers run.
    """
    import ray

    storage = open_directory(directory, storage_options)
    paths = [storage.path(entry["name"]) for entry in read_manifest(storage)["shards"]]
    if not is_local(storage):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        read_kwargs.setdefault("filesystem", PyFileSystem(FSSpecHandler(storage.fs)))
    return ray.data.read_webdataset(paths, decoder=decode_sample, **read_kwargs)
