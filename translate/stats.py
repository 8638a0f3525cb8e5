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
    back_requests: int = 0  # back-translations asked for quality scores (translate/quality.py)
    scored: int = 0  # rows with a quality score
    quality_sum: float = 0.0  # of their scores, for the mean
    quality_method: str | None = None  # what the scores are: back_translation (chrF 0-100) or encoder (cosine)
    prompt_tokens: int = 0  # of this part's requests (back-translations too), as the server's `usage` counted them
    completion_tokens: int = 0
    run: dict | None = None  # over all parts only: what the latest run cost (RunCost.to_json), not summed

    @property
    def deduplicated(self) -> int:
        """Texts not sent because an identical one was (in this part, or earlier in the run)."""
        texts = self.texts if self.texts is not None else self.rows - self.flagged.get("empty_source", 0)
        return texts - self.distinct_texts + self.from_run

    def add(self, other: PartStats) -> None:
        if self.texts is not None or other.texts is not None:  # stats written before texts was counted
            self.texts = _texts(self) + _texts(other)
        for name in ("rows", "translated", "distinct_texts", "from_cache", "from_run", "requests",
                     "back_requests", "scored", "quality_sum", "prompt_tokens", "completion_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.quality_method and self.quality_method not in (None, other.quality_method):
            self.quality_method = "mixed"  # parts scored by different methods: their mean means little
        elif other.quality_method:
            self.quality_method = other.quality_method
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
            "back_requests": self.back_requests,
            "scored": self.scored,
            "quality_sum": round(self.quality_sum, 3),
            "quality_mean": round(self.quality_sum / self.scored, 4) if self.scored else None,
            "quality_method": self.quality_method,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_request": _per(self.prompt_tokens, self.completion_tokens, self.requests),
            **({"run": self.run} if self.run is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> PartStats:
        return cls(**{k: v for k, v in data.items() if k not in ("tokens_per_request", "quality_mean")})


@dataclass
class RunCost:
    """What one run's requests for a (source, target) cost: the parts it wrote, the server's token
    counts (``usage``), and the run's wall time (the translation step, engine start-up included
    where vlmix starts the engines), so ``tokens_per_s`` is the rate the run achieved."""

    seconds: float = 0.0
    rows: int = 0  # of the parts written by this run
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict:
        tokens = self.prompt_tokens + self.completion_tokens
        return {"seconds": round(self.seconds, 3), "rows": self.rows, "requests": self.requests,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens_per_s": round(tokens / self.seconds, 1) if self.seconds > 0 else None,
                "tokens_per_request": _per(self.prompt_tokens, self.completion_tokens, self.requests),
                "tokens_per_row": _per(self.prompt_tokens, self.completion_tokens, self.rows)}


def _per(prompt: int, completion: int, count: int) -> dict | None:
    """Prompt and completion tokens per ``count`` (requests, rows), or None when there were none."""
    if not count:
        return None
    return {"prompt": round(prompt / count, 1), "completion": round(completion / count, 1)}


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
    cost: RunCost = field(default_factory=RunCost)  # this run's requests (the parts it wrote)


def summarise(storage: Storage, source: str, target: str, run: RunCost | None = None) -> PartStats:
    """Stats over every finished part of (source, target), written as ``stats.json`` beside them,
    with what the latest run cost (``run``) where given."""
    folder = storage.path(TRANSLATE_DIR, source, target)
    total = PartStats(run=run.to_json() if run is not None else None)
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
