"""A streaming, reproducible WebDataset shard writer: ``<prefix>-%06d.tar`` files.

Why not ``webdataset.ShardWriter``: its shards appear under their final name while being written
(a reader cannot tell a cut-off shard from a finished one), its tar headers carry the wall-clock
time (two runs never give the same bytes), it checks the size limit only after writing (a shard
can overshoot it) and it keeps no checksum. This writer:

- writes each shard as ``.<name>.tmp`` and moves it into place when complete, on local disk or
  any fsspec filesystem (``s3://bucket/run/shards``): object stores have no atomic rename, but
  their move is a copy that makes the final object appear whole, and an unfinished upload is
  aborted rather than completed;
- writes byte-identical tars for identical input (fixed mtime, owner and mode);
- closes a shard *before* a sample would take it past ``max_samples`` or ``max_bytes``;
- computes each shard's sha256 while writing, for the manifest;
- holds one sample at a time: memory stays flat however many samples go through (on object
  storage, plus the filesystem's upload buffer: one multipart part, 50 MiB with s3fs).

The members are plain POSIX tar (``tarfile`` builds the headers), so every tar and WebDataset
reader reads them.

>>> with ShardWriter("out", "mix", max_samples=1000) as writer:  # doctest: +SKIP
...     writer.write("laion_en-000001", [("jpg", jpeg_bytes), ("json", json_bytes)])
>>> writer.shards[0]  # doctest: +SKIP
ShardInfo(name='mix-000000.tar', samples=1, bytes=10240, sha256='...')
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec.spec import AbstractBufferedFile

from pipelines.storage import Storage
from shards.location import open_directory

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tar files are padded to whole records, as tar(1) writes them
_MTIME = 0  # fixed, so the same samples always give the same bytes


@dataclass(frozen=True, slots=True)
class ShardInfo:
    name: str  # file name inside the output directory
    samples: int
    bytes: int
    sha256: str


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def member_bytes(size: int) -> int:
    """Bytes a member of ``size`` data bytes takes in a tar (header + data padded to blocks)."""
    return BLOCK + -(-size // BLOCK) * BLOCK


def finished_size(written: int) -> int:
    """File size of a tar once closed: the end-of-archive blocks, then padding to a whole record."""
    end = written + 2 * BLOCK
    return end + -end % RECORD


class ShardWriter:
    """Write samples (a key and its ``(extension, bytes)`` members) into size-bounded tar shards.

    ``directory`` is a local folder, an fsspec URI or a :class:`~pipelines.storage.Storage`;
    ``storage_options`` are the fsspec options for a URI (e.g. ``{"endpoint_url": ...}``).
    """

    def __init__(
        self,
        directory: str | Path | Storage,
        prefix: str,
        max_samples: int = 10_000,
        max_bytes: int = 1 << 30,
        start_shard: int = 0,
        storage_options: dict[str, Any] | None = None,
    ):
        if max_samples < 1 or max_bytes < RECORD:
            raise ValueError(f"max_samples must be >= 1 and max_bytes >= {RECORD}")
        self.storage = open_directory(directory, storage_options)
        self.storage.makedirs(self.storage.root)
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.next_index = start_shard
        self.shards: list[ShardInfo] = []
        self._file = None

    def write(self, key: str, members: Sequence[tuple[str, bytes]]) -> None:
        """Add one sample; its members become ``<key>.<extension>`` in the current shard."""
        if "." in key or "/" in key or not key:
            raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' or '/'")
        size = sum(member_bytes(len(data)) for _, data in members)
        if self._file is not None and (
            self._samples >= self.max_samples or finished_size(self._bytes + size) > self.max_bytes
        ):
            self._finish()
        if self._file is None:
            self._open()
        for extension, data in members:
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size = len(data)
            info.mtime = _MTIME
            info.mode = 0o444
            self._put(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            self._put(data)
            padding = -len(data) % BLOCK
            if padding:
                self._put(b"\0" * padding)
        self._samples += 1

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every shard written by this writer."""
        if self._file is not None:
            self._finish()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:  # never let a half-written shard take a final name
            self._abandon()

    def _open(self) -> None:
        self._name = shard_name(self.prefix, self.next_index)
        self._temporary = self.storage.path(f".{self._name}.tmp")
        self._file = self.storage.fs.open(self._temporary, "wb")
        self._hash = hashlib.sha256()
        self._samples = 0
        self._bytes = 0

    def _put(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self._bytes += len(data)

    def _finish(self) -> None:
        self._put(b"\0" * (finished_size(self._bytes) - self._bytes))
        self._file.close()
        self._file = None
        self.storage.fs.mv(self._temporary, self.storage.path(self._name))
        self.shards.append(ShardInfo(self._name, self._samples, self._bytes, self._hash.hexdigest()))
        self.next_index += 1

    def _abandon(self) -> None:
        file, self._file = self._file, None
        if isinstance(file, AbstractBufferedFile):  # object storage: abort the upload, don't finish it
            file.discard()
            file.closed = True
        else:
            file.close()
        with contextlib.suppress(FileNotFoundError):
            self.storage.fs.rm_file(self._temporary)
