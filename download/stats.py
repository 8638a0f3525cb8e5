"""What a source's download came to: every row of its URL lists, counted once under its outcome.

The executor's report counts attempts (a URL the retry pass fetched again is in two shards); a
source's :class:`DownloadStats` count URL rows, from the filter parts' summaries and the shards'
own result tables: the last attempt at a row decides, and a success in a retry pass is
``recovered_by_retry``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from download import retry
from download.context import STATS_FILE
from download.guards import classify_error
from download.retry import ORIGIN_KEY
from pipelines.layout.raw import RAW_DIR, complete_shards
from pipelines.storage import Storage


def sample_id(meta: dict) -> str:
    """The stable id of a downloaded sample, from its img2dataset JSON.

    A sample recovered by the retry pass sits in a later shard under a new img2dataset key; its
    id stays the key its URL row had in the first pass, so ids do not depend on which pass, or
    which of several killed and resumed runs, fetched the image.
    """
    return meta.get(ORIGIN_KEY) or meta["key"]


@dataclass
class DownloadStats:
    """What happened to every row of a source's URL list: the counts add up to ``urls``."""

    source: str
    urls: int = 0
    filtered: Counter = field(default_factory=Counter)
    downloaded: int = 0
    failed: Counter = field(default_factory=Counter)
    recovered_by_retry: int = 0
    shards: int = 0
    seconds: float = 0.0
    nodes: Counter = field(default_factory=Counter)  # Ray node id -> shards it downloaded (this run)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "urls": self.urls,
            "filtered": dict(sorted(self.filtered.items())),
            "downloaded": self.downloaded,
            "failed": dict(sorted(self.failed.items())),
            "recovered_by_retry": self.recovered_by_retry,
            "shards": self.shards,
            "seconds": round(self.seconds, 2),
            "nodes": dict(sorted(self.nodes.items())),
        }

    @classmethod
    def from_json(cls, data: dict) -> DownloadStats:
        return cls(
            source=data["source"], urls=data["urls"], filtered=Counter(data["filtered"]),
            downloaded=data["downloaded"], failed=Counter(data["failed"]),
            recovered_by_retry=data["recovered_by_retry"], shards=data["shards"], seconds=data["seconds"],
            nodes=Counter(data.get("nodes", {})),
        )

    def drops(self) -> dict[str, dict[str, int]]:
        """The rows that did not become samples: ``filtered`` and ``failed``, each by reason."""
        return {"filtered": dict(sorted(self.filtered.items())), "failed": dict(sorted(self.failed.items()))}

    def check_balance(self) -> None:
        accounted = sum(self.filtered.values()) + self.downloaded + sum(self.failed.values())
        if accounted != self.urls:
            raise RuntimeError(f"{self.source}: {self.urls} URLs but {accounted} accounted for: {self.to_json()}")


def downloaded_stats(storage: Storage) -> list[DownloadStats]:
    """The counters of every source downloaded under ``storage`` (its ``_vlmix_download.json``)."""
    return [DownloadStats.from_json(storage.read_json(path))
            for path in storage.glob(storage.path(RAW_DIR, "*", STATS_FILE))]


def download_drops(storage: Storage) -> dict[str, dict[str, dict[str, int]]] | None:
    """The download stage's drops, for the manifest: per source in the root's raw folder, its rows by
    outcome (:meth:`DownloadStats.drops`); for raw shards that img2dataset wrote outside vlmix (no
    counters of ours), what img2dataset failed to fetch, by reason. None when nothing was downloaded."""
    counted = {stats.source: stats.drops() for stats in downloaded_stats(storage)}
    for folder in storage.glob(storage.path(RAW_DIR, "*")):
        source = folder.rstrip("/").split("/")[-1]
        if source not in counted and storage.fs.isdir(folder):
            counted[source] = {"filtered": {}, "failed": _img2dataset_failures(storage, source)}
    return dict(sorted(counted.items())) or None


def _img2dataset_failures(storage: Storage, source: str) -> dict[str, int]:
    """img2dataset's own failure counts (``status_dict``) summed over the source's complete shards."""
    failed: Counter[str] = Counter()
    for shard in complete_shards(storage, source):
        stats = storage.read_json(storage.path(RAW_DIR, source, f"{shard}_stats.json"))
        failed.update({reason: int(n) for reason, n in (stats.get("status_dict") or {}).items() if reason != "success"})
    return dict(sorted(failed.items()))


def count_outcomes(storage: Storage, out: str, stats: DownloadStats) -> None:
    """Final outcome per URL row: the last attempt wins; a success in a retry pass is 'recovered'."""
    outcome: dict[str, tuple[str, str | None]] = {}
    recovered = 0
    for table in retry.shard_tables(storage, out, 0, None):
        origin = table[ORIGIN_KEY].to_pylist() if ORIGIN_KEY in table.column_names else None
        keys, statuses, errors = table["key"].to_pylist(), table["status"].to_pylist(), table["error_message"].to_pylist()
        for i, key in enumerate(keys):
            row_id = origin[i] if origin else key
            if origin and statuses[i] == "success":
                recovered += 1
            outcome[row_id] = (statuses[i], errors[i])
        stats.shards += 1
    stats.recovered_by_retry = recovered
    for status, error in outcome.values():
        if status == "success":
            stats.downloaded += 1
        else:
            stats.failed[classify_error(error)[0]] += 1
