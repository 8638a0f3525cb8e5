"""What every unit of the download stages needs, shipped to the Ray workers with each unit."""

from __future__ import annotations

from dataclasses import dataclass, field

from download.settings import Download
from pipelines.layout.raw import RAW_DIR
from pipelines.stage import StageContext
from pipelines.storage import Storage

STATS_FILE = "_vlmix_download.json"  # a source's counters, written last: its completion marker
SHARD_DIGITS = 5  # digits of a shard id, as img2dataset names them (its ``oom_shard_count``)


@dataclass(frozen=True)
class DownloadContext(StageContext):
    """The storage root and its options (:class:`StageContext`), and the download settings."""

    settings: Download = field(default_factory=Download)


def raw_folder(storage: Storage, source: str) -> str:
    """``<root>/raw/<source>``: the source's shards, URL lists and counters."""
    return storage.path(RAW_DIR, source)


def shard_name(shard_id: int) -> str:
    return f"{shard_id:0{SHARD_DIGITS}d}"
