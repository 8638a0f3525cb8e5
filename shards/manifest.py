"""``manifest.json``: what a shard directory holds, and how it came to be.

Keys: ``format``; ``config_hash`` (the caller's config fingerprint, or the settings' own) and
``settings_hash`` (mix + shard settings); ``seed``; ``total_samples``; ``tasks`` / ``sources`` /
``languages``: ``{name: {"target_share", "achieved_share", "samples", ...}}`` (a source also has
``available``, ``unique_samples``, ``repeat_time``, ``duplicates_removed``, ``weight`` and its
per-task counts); ``shards``: ``[{"name", "samples", "bytes", "sha256"}]``; ``drops``: per stage
(``download``, ``tasks``, ``dedup``, ``mix``, plus whatever stage counters the caller passes),
the counters of what was dropped and why.

The manifest holds no timestamp, so the same inputs and settings give the same bytes. It is
written last, under a temporary name: its presence means the shards beside it are complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT = "vlmix-shards/1"


def write_manifest(directory: str | Path, manifest: dict) -> Path:
    path = Path(directory) / MANIFEST
    temporary = path.with_name(f".{MANIFEST}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
    os.replace(temporary, path)
    return path


def read_manifest(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: not a finished vlmix shard directory") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest
