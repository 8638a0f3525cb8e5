"""What translating a part produced and cost, per part (``part-<stem>.stats.json``, written before the
part's Parquet file) and per (source, target) over every finished part (``stats.json``)."""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass, field

from pipelines.storage import Storage
from translate.table import TRANSLATE_DIR


@dataclass
class PartStats:
    """What one (part, target) produced, and what it cost."""

    rows: int = 0
    translated: int = 0
    flagged: dict[str, int] = field(default_factory=dict)  # reason -> rows
    distinct_texts: int = 0
    from_cache: int = 0  # distinct texts answered by the persistent cache
    from_run: int = 0  # distinct texts another part of this run already asked for
    requests: int = 0  # distinct texts sent to a server
    texts: int | None = None  # texts to translate, repeats included (a conversation counts its pieces)
    cleaned: dict[str, int] = field(default_factory=dict)  # kind -> answers it was removed from (translate/cleanup.py)

    @property
    def deduplicated(self) -> int:
        """Texts not sent because an identical one was (in this part, or earlier in the run)."""
        texts = self.texts if self.texts is not None else self.rows - self.flagged.get("empty_source", 0)
        return texts - self.distinct_texts + self.from_run

    def add(self, other: PartStats) -> None:
        if self.texts is not None or other.texts is not None:  # stats written before texts was counted
            self.texts = _texts(self) + _texts(other)
        for name in ("rows", "translated", "distinct_texts", "from_cache", "from_run", "requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.flagged = dict(Counter(self.flagged) + Counter(other.flagged))
        self.cleaned = dict(Counter(self.cleaned) + Counter(other.cleaned))

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "translated": self.translated,
            "flagged": dict(sorted(self.flagged.items())),
            "distinct_texts": self.distinct_texts,
            "from_cache": self.from_cache,
            "from_run": self.from_run,
            "requests": self.requests,
            "texts": self.texts,
            "cleaned": dict(sorted(self.cleaned.items())),
        }

    @classmethod
    def from_json(cls, data: dict) -> PartStats:
        return cls(**data)


@dataclass
class TargetReport:
    """One source in one target language, over every part (also those finished by earlier runs)."""

    source: str
    target: str
    parts_written: int = 0
    parts_skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # part -> error
    transient: set[str] = field(default_factory=set)  # the failed parts whose error was transient
    stats: PartStats = field(default_factory=PartStats)


def summarise(storage: Storage, source: str, target: str) -> PartStats:
    """Stats over every finished part of (source, target), written as ``stats.json`` beside them."""
    folder = storage.path(TRANSLATE_DIR, source, target)
    total = PartStats()
    for path in storage.glob(posixpath.join(folder, "part-*.parquet")):
        stats_file = stats_path(path)
        if storage.exists(stats_file):
            total.add(PartStats.from_json(storage.read_json(stats_file)))
    storage.write_json(posixpath.join(folder, "stats.json"), total.to_json())
    return total


def _texts(stats: PartStats) -> int:
    return stats.texts if stats.texts is not None else stats.rows - stats.flagged.get("empty_source", 0)


def stats_path(parquet_path: str) -> str:
    return parquet_path[: -len(".parquet")] + ".stats.json"
