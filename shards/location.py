"""Where a shard directory lives: a local folder or an fsspec URI (``s3://bucket/run/shards``).

Every shard tool (writer, verify, export, :func:`shards.reader.shard_urls`) takes the directory
as a path, a URI or a :class:`~pipelines.storage.Storage`, plus optional fsspec storage options.
On S3 the endpoint and credentials come from the usual places (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``..., ``~/.aws``) unless the options name them (``endpoint_url``, ``key``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec

from pipelines.storage import Storage


def open_directory(directory: str | Path | Storage, options: dict[str, Any] | None = None) -> Storage:
    """The filesystem and path of a shard directory; a :class:`Storage` is returned unchanged."""
    if isinstance(directory, Storage):
        return directory
    return Storage(str(directory), options)


def options_for(directory: str | Path | Storage, like: Storage) -> dict[str, Any] | None:
    """``like``'s storage options when ``directory`` is on the same kind of filesystem, else none.

    So a shard directory on the storage root's S3 reuses its endpoint settings, while a local
    shard directory beside an S3 root gets no S3 options.
    """
    if isinstance(directory, Storage):
        return directory.options
    return like.options if fsspec.utils.get_protocol(str(directory)) == like.protocol else None


def is_local(storage: Storage) -> bool:
    return storage.protocol in ("file", "local")
