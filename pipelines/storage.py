"""Paths under the storage root, on local disk or object storage alike (fsspec).

Object stores have no atomic rename, so completion is never inferred from a file being present
while it is still being written: every output is written under a temporary name and moved into
place when complete, and a stage's own completion marker is the last object it writes.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq


class Storage:
    """A storage root (``/data/mix`` or ``s3://bucket/prefix``) and the filesystem that holds it."""

    def __init__(self, root: str, options: dict[str, Any] | None = None):
        self.options = dict(options or {})
        self.fs, self.root = fsspec.core.url_to_fs(root, **self.options)
        self.root = self.root.rstrip("/")
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]

    def path(self, *parts: str) -> str:
        """A path under the root, as the filesystem names it (no protocol)."""
        return posixpath.join(self.root, *parts)

    def uri(self, path: str) -> str:
        """``path`` (as :meth:`path` returns it) with its protocol, for libraries that take URIs."""
        return path if self.protocol in ("file", "local") else f"{self.protocol}://{path}"

    def root_uri(self) -> str:
        """The root as a URI another process can open again (with :attr:`options`)."""
        return self.uri(self.root)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def glob(self, pattern: str) -> list[str]:
        return sorted(self.fs.glob(pattern))

    def makedirs(self, path: str) -> None:
        self.fs.makedirs(path, exist_ok=True)

    def read_json(self, path: str) -> Any:
        with self.fs.open(path, "r", encoding="utf-8") as f:
            return json.load(f)

    def write_json(self, path: str, value: Any) -> None:
        self.write_bytes(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` so that readers see all of it or nothing."""
        self.makedirs(posixpath.dirname(path))
        temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open(temporary, "wb") as f:
            f.write(data)
        self.fs.mv(temporary, path)

    def write_parquet(self, path: str, table: pa.Table) -> None:
        self.makedirs(posixpath.dirname(path))
        temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        pq.write_table(table, temporary, filesystem=self.fs)
        self.fs.mv(temporary, path)

    def read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(path, columns=columns, filesystem=self.fs)

    def remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
