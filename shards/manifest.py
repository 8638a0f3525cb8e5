"""``manifest.json``: what a shard directory holds, and how it came to be.

Keys: ``format``; ``config_hash`` (the caller's config fingerprint, or the settings' own) and
``settings_hash`` (mix + shard settings); ``plan_hash`` (settings and the inputs' content);
``inputs_fingerprint`` (the task tables' content: compare it across runs to know whether two
mixtures were drawn from the same samples); ``seed``; ``total_samples``; ``tasks`` / ``sources`` /
``languages``: ``{name: {"target_share", "achieved_share", "samples", ...}}`` (a source also has
``available``, ``unique_samples``, ``repeat_time``, ``duplicates_removed``, ``weight`` and its
per-task counts; after the decontamination stage, ``near_duplicates_removed`` and
``contamination_removed``); ``shards``: ``[{"name", "samples", "bytes", "sha256"}]``; ``drops``: per stage
(``download``, ``tasks``, ``dedup``, ``decontam`` (per dataset, per reason), ``mix``, plus whatever stage counters the caller passes),
the counters of what was dropped and why.

The manifest holds no timestamp, so the same inputs and settings give the same bytes. It is
written last, under a temporary name: its presence means the shards beside it are complete, and
readers (``vlmix verify``, :func:`shards.reader.shard_urls`) trust only the shards it lists. On
object storage, where nothing can be renamed atomically, this is what commits a directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.storage import Storage
from shards.location import open_directory

MANIFEST = "manifest.json"
FORMAT = "vlmix-shards/1"


def write_manifest(
    directory: str | Path | Storage, manifest: dict, storage_options: dict | None = None
) -> str:
    """Write ``manifest.json`` into ``directory`` (a folder or an fsspec URI); returns its path.

    It goes to a temporary name first and is moved into place, so it is there whole or not at all:
    on object storage, which has no atomic rename, the move is a server-side copy that makes the
    object appear complete, and the manifest is the commit marker of the whole directory.
    """
    storage = open_directory(directory, storage_options)
    path = storage.path(MANIFEST)
    temporary = storage.path(f".{MANIFEST}.tmp")
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    with storage.fs.open(temporary, "wb") as f:
        f.write(data)
    storage.fs.mv(temporary, path)
    return path


def read_manifest(directory: str | Path | Storage, storage_options: dict[str, Any] | None = None) -> dict:
    storage = open_directory(directory, storage_options)
    path = storage.path(MANIFEST)
    try:
        with storage.fs.open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{storage.uri(path)} not found: not a finished vlmix shard directory"
        ) from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{storage.uri(path)}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest
