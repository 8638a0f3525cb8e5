"""Reading our shards back, from a local folder or object storage.

- :class:`ShardReader`: one pass over a shard, giving its samples and then its sha256 and size,
  so a shard on S3 is downloaded once, not once to hash it and again to read it;
- :func:`iter_samples`, :func:`file_sha256`: the same, one at a time;
- :func:`shard_urls`: the manifest's shards as URLs any ``webdataset.WebDataset`` opens.

>>> import webdataset
>>> from shards.reader import shard_urls
>>> dataset = webdataset.WebDataset(shard_urls("s3://bucket/run/shards"), shardshuffle=False)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
import sys
import tarfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.storage import Storage
from shards.location import is_local, open_directory
from shards.manifest import read_manifest

_CHUNK = 1 << 20


class _HashingReader:
    """A file read front to back: hashes every byte it hands out, and keeps the last few."""

    def __init__(self, raw, keep: int = 1 << 15):
        self.raw, self.keep = raw, keep
        self.digest = hashlib.sha256()
        self.position = 0
        self._recent: deque[bytes] = deque()
        self._recent_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.digest.update(data)
            self.position += len(data)
            self._recent.append(data)
            self._recent_bytes += len(data)
            while self._recent_bytes - len(self._recent[0]) >= self.keep:
                self._recent_bytes -= len(self._recent.popleft())
        return data

    def bytes_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``, which must lie within the last ``keep`` bytes read."""
        while self.position < offset + size and self.read(_CHUNK):
            pass
        start = self.position - self._recent_bytes
        if offset < start:
            raise ValueError(f"byte {offset} was read too long ago (kept from {start})")
        return b"".join(self._recent)[offset - start : offset - start + size]

    def drain(self) -> None:
        """Read (and hash) the rest of the file."""
        self._recent.clear()
        self._recent_bytes = 0
        while data := self.raw.read(_CHUNK):
            self.digest.update(data)
            self.position += len(data)


class ShardReader:
    """Iterate one shard's samples; afterwards :meth:`sha256` and :attr:`size` cost no second read.

    Iterating yields ``(key, {extension: bytes})`` per sample, members grouped by key as WebDataset
    does, and raises ``tarfile.TarError`` or ``EOFError`` on a damaged tar after its intact samples.
    ``fs`` is the fsspec filesystem holding ``path`` (None: a local path).
    """

    def __init__(self, path: str | Path, fs=None):
        self.path = str(path)
        self._file = fs.open(self.path, "rb") if fs is not None else open(self.path, "rb")  # noqa: SIM115
        self._reader = _HashingReader(self._file)

    def __iter__(self) -> Iterator[tuple[str, dict[str, bytes]]]:
        with tarfile.open(fileobj=self._reader, mode="r|") as tar:
            key, members = None, {}
            for member in tar:
                if not member.isfile():
                    continue
                base, _, extension = posixpath.basename(member.name).partition(".")
                if key is not None and base != key:
                    yield key, members
                    members = {}
                key = base
                data = tar.extractfile(member).read()
                if len(data) != member.size:  # tarfile returns a cut-off member's bytes without complaint
                    raise EOFError(f"{member.name}: {len(data)} of {member.size} bytes, the tar is truncated")
                members[extension] = data
            end = tar.offset
            if key is not None:
                yield key, members
        # tarfile takes a file cut between members, or garbage after them, as a clean end.
        marker = self._reader.bytes_at(end, 2 * tarfile.BLOCKSIZE)
        if len(marker) != 2 * tarfile.BLOCKSIZE or marker.count(0) != len(marker):
            raise EOFError(f"{self.path}: no end-of-archive marker after byte {end}, the tar is truncated")

    def sha256(self) -> str:
        """The whole file's sha256 (reads whatever iterating left unread)."""
        self._reader.drain()
        return self._reader.digest.hexdigest()

    @property
    def size(self) -> int:
        """Bytes read so far: the file's size once :meth:`sha256` was called."""
        return self._reader.position

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_samples(path: str | Path, fs=None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {extension: bytes})`` per sample of one shard (see :class:`ShardReader`)."""
    with ShardReader(path, fs) as reader:
        yield from reader


def sample_keys(path: str | Path, fs=None) -> list[str]:
    """The sample keys of a shard, in order."""
    return [key for key, _ in iter_samples(path, fs)]


def file_sha256(path: str | Path, fs=None) -> str:
    digest = hashlib.sha256()
    with fs.open(str(path), "rb") if fs is not None else open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def shard_urls(directory: str | Path | Storage, storage_options: dict[str, Any] | None = None) -> list[str]:
    """URLs of the shards ``manifest.json`` lists, in order, that ``webdataset`` opens as they are.

    Only listed shards are returned: the manifest is written last, so a directory a writer left
    unfinished (no manifest yet) raises ``FileNotFoundError`` instead of serving a partial set.
    Local shards come back as absolute paths. Shards on object storage come back as ``pipe:``
    commands that stream each object to stdout through fsspec (``python shards/cat.py URI``),
    because webdataset opens no ``s3://`` URL itself; the command runs with the caller's
    environment, so the endpoint and credentials come from ``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``... ``storage_options`` (no credentials in them: the command line is
    visible to every user of the machine) are passed on as JSON.
    """
    storage = open_directory(directory, storage_options)
    command = [sys.executable, str(Path(__file__).with_name("cat.py"))]  # by path: skips importing shards
    if storage.options and not is_local(storage):
        _refuse_credentials(storage.options)
        command += ["--options", json.dumps(storage.options, sort_keys=True)]
    paths = [storage.path(entry["name"]) for entry in read_manifest(storage)["shards"]]
    if is_local(storage):
        return paths
    return ["pipe:" + shlex.join([*command, storage.uri(path)]) for path in paths]


_SECRET_WORDS = ("secret", "token", "password", "credential", "access_key")


def _refuse_credentials(options: dict[str, Any], where: str = "storage_options") -> None:
    for name, value in options.items():
        lowered = name.lower()
        if lowered == "key" or any(word in lowered for word in _SECRET_WORDS):
            raise ValueError(
                f"{where}.{name}: credentials would be visible on the pipe command line; set them in "
                "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or ~/.aws instead"
            )
        if isinstance(value, dict):
            _refuse_credentials(value, f"{where}.{name}")
