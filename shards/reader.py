"""Reading our shards back: samples in order, and checksums of whole files."""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path


def iter_samples(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {extension: bytes})`` per sample, members grouped by key as WebDataset does.

    Raises ``tarfile.TarError`` (or ``EOFError``) on a damaged tar, after the intact samples.
    """
    with tarfile.open(path, mode="r|") as tar:
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
    _check_end_of_archive(path, end)


def _check_end_of_archive(path: str | Path, offset: int) -> None:
    """A tar ends with two zero blocks; ``tarfile`` takes a file cut between members as a clean end."""
    with open(path, "rb") as f:
        f.seek(offset)
        marker = f.read(2 * tarfile.BLOCKSIZE)
    if len(marker) != 2 * tarfile.BLOCKSIZE or marker.count(0) != len(marker):
        raise EOFError(f"{path}: no end-of-archive marker after byte {offset}, the tar is truncated")


def sample_keys(path: str | Path) -> list[str]:
    """The sample keys of a shard, in order, from its headers only."""
    keys: list[str] = []
    with tarfile.open(path, mode="r|") as tar:
        for member in tar:
            base = posixpath.basename(member.name).partition(".")[0]
            if not keys or keys[-1] != base:
                keys.append(base)
    return keys


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
