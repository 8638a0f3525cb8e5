"""The download stage's one entry: :func:`run` over a :class:`DownloadRun`, as the flow's registry
calls it: every URL-list source at once (filters, img2dataset passes, retry passes; resumable),
its counters per source. The passes run on the Ray the caller started or joined, in this process if
none (:func:`download.stage.download_sources`).

>>> run(DownloadRun("/data/mix", settings=Download(timeout_s=20), sources=(laion, coyo)))  # doctest: +SKIP
{'laion': {'urls': 1000000, 'downloaded': 912345, 'failed': {'http_404': ...}, ...}, 'coyo': {...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from download.settings import Download
from pipelines.source import Source
from pipelines.stage import StageContext


@dataclass(frozen=True)
class DownloadRun(StageContext):
    """What the download stage runs on: the root, its settings, the URL-list sources to download."""

    settings: Download = field(default_factory=Download)
    sources: tuple[Source, ...] = ()


def run(ctx: DownloadRun) -> dict[str, dict[str, Any]]:
    """Download every source of ``ctx`` (a source already downloaded keeps its saved counters)."""
    from download.stage import download_sources

    stats = download_sources(list(ctx.sources), ctx.settings, ctx.storage())
    return {name: s.to_json() for name, s in stats.items()}
