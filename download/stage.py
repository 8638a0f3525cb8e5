"""The download stage: URL list -> filtered list -> img2dataset shards -> retry passes -> stats.

Both steps are stages of the one contract (:mod:`pipelines.stage`), run by its executor over every
source at once, so a cluster is busy with the whole mixture: the filters, a unit per input file
(:class:`~download.url_lists.FilterUrlLists`), then the passes, a unit per shard
(:class:`~download.shards.DownloadStage`). The executor skips what is done, retries
transient errors and reports progress; this module chains the passes and counts the outcome.

Layout under ``<root>/raw/<source>/``:

- ``_urls/part-NNNNN.parquet`` (+ ``.json``): the URL list after the column filters, one per input file;
- ``NNNNN.tar|.parquet|_stats.json``: img2dataset's shards. A shard is complete when its
  ``_stats.json`` exists: each shard is written in a private ``_inflight/`` folder and moved into
  place, stats last, so a killed run leaves no half shard under a final name;
- ``_retry<r>/urls.parquet``: the retryable failures of the previous pass (timeouts, 5xx,
  connection resets; never 404; a too_slow URL once at most; a 429/503 with the time its
  ``Retry-After`` allows), downloaded again into shards numbered after the previous pass
  (:mod:`download.retry`);
- ``_vlmix_download.json``: the source's :class:`DownloadStats`, written last: its completion marker.

A rerun skips complete shards and redoes the rest; shard contents (and so sample keys) depend only
on the filtered URL list, so the final set of keys is the same however often the run was killed.
"""

from __future__ import annotations

import logging
import posixpath
import time

from download import retry
from download.context import STATS_FILE, DownloadContext, raw_folder
from download.retry import ORIGIN_KEY
from download.settings import Download
from download.shards import DownloadStage, Pass
from download.stats import DownloadStats, count_outcomes, sample_id
from download.url_lists import FilterUrlLists
from pipelines.source import Source
from pipelines.stage import execute
from pipelines.storage import Storage

__all__ = ["ORIGIN_KEY", "STATS_FILE", "DownloadStats", "download_source", "download_sources", "sample_id"]

log = logging.getLogger(__name__)


def download_source(settings: Download, source: Source, storage: Storage, progress: bool = True) -> DownloadStats:
    """Download one URL-list source into ``<root>/raw/<source>/`` and return its stats (resumable)."""
    return download_sources([source], settings, storage, progress)[source.name]


def download_sources(sources: list[Source], settings: Download, storage: Storage,
                     progress: bool = True) -> dict[str, DownloadStats]:
    """Download the URL-list sources, all at once: their shards as Ray tasks when Ray is up
    (``ensure_ray``), else in this process. A source already downloaded returns its saved stats.

    Progress lines come from the executor, per pass (``progress`` is kept for callers: there is no
    progress bar to turn off).
    """
    done: dict[str, DownloadStats] = {}
    todo = []
    for source in sources:
        if source.images_from is not None:
            raise ValueError(f"source {source.name!r} reuses {source.images_from!r}'s images: nothing to download")
        marker = posixpath.join(raw_folder(storage, source.name), STATS_FILE)
        if storage.exists(marker):
            log.info("%s: already downloaded, skipping", source.name)
            done[source.name] = DownloadStats.from_json(storage.read_json(marker))
        else:
            todo.append(source)
    if todo:
        done.update(_download(todo, settings, storage))
    return {source.name: done[source.name] for source in sources}


def _download(sources: list[Source], settings: Download, storage: Storage) -> dict[str, DownloadStats]:
    started = time.monotonic()
    ctx = DownloadContext(storage.root_uri(), storage.options, settings)
    filtering = FilterUrlLists(sources)
    execute(filtering, ctx)
    storage.fs.invalidate_cache()  # the workers wrote there: an object store's cached listings are stale
    stats, passes = {}, []
    for source in sources:
        urls, filtered, lists = filtering.summary(storage, source.name)
        stats[source.name] = DownloadStats(source=source.name, urls=urls, filtered=filtered)
        passes.append(Pass(source.name, 0, tuple(lists), 0))
    while passes:  # the passes of all sources in step: first passes, then each retry round
        stage = DownloadStage(passes, settings)
        report = execute(stage, ctx)
        storage.fs.invalidate_cache()
        log.info("%s: %d shards (%d already done), %d samples, failed URLs %s", stage.name, report.units,
                 report.skipped, report.counters.samples, dict(report.counters.drops))
        following = []
        for current in passes:
            stats[current.source].nodes.update(stage.nodes(storage, current.source))
            retry_pass = _retry_pass(settings, storage, current)
            if retry_pass is None:
                _finish(storage, stats[current.source], started)
            else:
                following.append(retry_pass)
        passes = following
    return stats


def _retry_pass(settings: Download, storage: Storage, current: Pass) -> Pass | None:
    """The pass over the retryable failures of ``current``; None after the last round or when none failed."""
    if current.round >= settings.retry_rounds:
        return None
    stop = current.stop(settings.samples_per_shard)
    found = retry.retry_list(storage, raw_folder(storage, current.source), current.first_shard, stop,
                             current.round + 1, settings.max_retry_after_s)
    if found is None:
        return None
    log.info("%s: retry pass %d over %d URLs", current.source, current.round + 1, found[1])
    return Pass(current.source, current.round + 1, (found,), stop)


def _finish(storage: Storage, stats: DownloadStats, started: float) -> None:
    """Count every URL row's outcome, check they add up, tidy up, and write the completion marker."""
    out = raw_folder(storage, stats.source)
    count_outcomes(storage, out, stats)
    for leftover in ("_tmp", "_inflight"):  # private folders of killed runs (``_tmp``: of earlier versions)
        storage.remove(posixpath.join(out, leftover))
    stats.seconds = time.monotonic() - started
    stats.check_balance()
    storage.write_json(posixpath.join(out, STATS_FILE), stats.to_json())
