"""Stage-level completion markers, so a rerun skips a stage whose inputs and config are unchanged.

A stage's marker ``<root>/_stages/<stage>.json`` holds the fingerprint of what it ran on (the
config hash plus the fingerprints of the stages before it) and its summary. Each stage also
resumes at shard level by itself; the marker only saves re-reading finished work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Callable, Sequence
from typing import Any

from flows.config import Config
from pipelines.storage import Storage

log = logging.getLogger(__name__)


def stage_fingerprint(config: Config, stage: str, upstream: list[str]) -> str:
    """What a stage ran on: the whole config but its storage root (the marker lives there; a moved root
    keeps its markers), so a source's changed location reruns the stages that read it."""
    canonical = json.dumps(config.model_dump(mode="json", exclude={"storage"}), sort_keys=True,
                           separators=(",", ":"))
    text = "|".join([hashlib.sha256(canonical.encode()).hexdigest(), stage, *upstream])
    return hashlib.sha256(text.encode()).hexdigest()


def run_stage(config: Config, stage: str, work: Callable[[], dict[str, Any]],
              upstream: list[str] | None = None, skip_unchanged: bool = True) -> dict[str, Any]:
    """Run ``work`` unless ``stage`` already completed with the same fingerprint; return its summary.

    The returned dict has ``stage``, ``fingerprint``, ``skipped`` and ``summary`` (what ``work``
    returned: JSON-able counters). With ``skip_unchanged`` false the work runs every time (the
    marker is written all the same, for the stages after it).
    """
    storage = config.storage.open()
    fingerprint = stage_fingerprint(config, stage, upstream or [])
    saved = read_marker(storage, stage) if skip_unchanged else None
    if saved is not None and saved.get("fingerprint") == fingerprint:
        log.info("stage %s: unchanged since its last run, skipped", stage)
        return {**saved, "skipped": True}
    started = time.monotonic()
    summary = work()
    record = {"stage": stage, "fingerprint": fingerprint, "seconds": round(time.monotonic() - started, 2),
              "summary": summary, "skipped": False}
    storage.write_json(marker_path(storage, stage), record)
    return record


def marker_path(storage: Storage, stage: str) -> str:
    """``<root>/_stages/<stage>.json``: ``stage``'s completion marker."""
    return posixpath.join(storage.path("_stages"), f"{stage}.json")


def read_marker(storage: Storage, stage: str) -> dict[str, Any] | None:
    """``stage``'s marker as its last completed run wrote it (see :func:`run_stage`), or None."""
    marker = marker_path(storage, stage)
    return storage.read_json(marker) if storage.exists(marker) else None


def read_summary(storage: Storage, stage: str) -> dict[str, Any] | None:
    """The summary ``stage``'s last completed run returned, or None if it never completed."""
    saved = read_marker(storage, stage)
    return None if saved is None else saved.get("summary") or {}


def completed_fingerprint(config: Config, stage: str) -> str | None:
    """The fingerprint recorded by ``stage``'s last completed run, or None."""
    saved = read_marker(config.storage.open(), stage)
    return None if saved is None else saved.get("fingerprint")


def upstream_fingerprints(config: Config, stages: Sequence[str]) -> list[str]:
    """The fingerprints of ``stages``' last completed runs ("" for none), so a changed upstream reruns a stage."""
    return [completed_fingerprint(config, name) or "" for name in stages]
