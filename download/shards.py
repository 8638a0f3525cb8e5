"""The download proper, on the stage contract: a unit per img2dataset shard of a pass's URL lists.

A pass is a source's filtered URL lists (``round`` 0) or the retry list of round ``r``
(:mod:`download.retry`). Its shards are numbered as img2dataset's reader numbers them:
consecutively from the pass's first id, ``ceil(rows / samples_per_shard)`` per file, in file
order; shard ``k`` of a file holds its rows ``[k * samples_per_shard, (k + 1) * samples_per_shard)``.
So a shard's contents, and its samples' keys, depend only on the URL lists.

A unit is done when its shard is finished (:func:`pipelines.layout.raw.finished_shard_ids`: its
``_stats.json`` exists). :meth:`DownloadStage.run_unit` runs on a Ray worker: it reads its rows,
hands them to img2dataset's downloader with vlmix's bounded fetch (:mod:`download.fetch`)
and guards, writing into a private ``_inflight/`` folder, and moves the shard into place, stats
last, so a killed run leaves no half shard under a final name.
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from download import retry
from download.context import SHARD_DIGITS, DownloadContext, raw_folder, shard_name
from download.fetch import FetchPolicy
from download.guards import GuardedResizer, bounded_download, classify_error
from download.settings import Download
from download.url_lists import read_rows
from pipelines._imports import require
from pipelines.layout.raw import finished_shard_ids
from pipelines.stage import Counters, Stage, Unit
from pipelines.storage import Storage

NODE_KEY = "vlmix_node"  # added to a shard's _stats.json: the Ray node that downloaded it
_NOT_CARRIED = ("url", "caption", "expected_sha256", retry.NOT_BEFORE)


@dataclass(frozen=True)
class Pass:
    """One img2dataset pass of a source: its URL lists as ``(path, rows)`` and its first shard id."""

    source: str
    round: int
    lists: tuple[tuple[str, int], ...]
    first_shard: int

    def stop(self, samples_per_shard: int) -> int:
        """The id after its last shard: where the next pass starts numbering."""
        return self.first_shard + sum(math.ceil(rows / samples_per_shard) for _, rows in self.lists)


class DownloadStage(Stage):
    """``<root>/raw/<source>/NNNNN.tar|.parquet|_stats.json`` for each shard of each source's pass."""

    name = "download"
    unit_kind = "shards"  # for the progress lines, where the executor reads it

    def __init__(self, passes: list[Pass], settings: Download):
        self.passes = {p.source: p for p in passes}
        rounds = {p.round for p in passes}
        if rounds - {0}:
            self.name = f"download retry {max(rounds)}"
        self.num_cpus = settings.cpus_per_worker
        self.max_in_flight = settings.max_workers  # None: as many as the cluster's CPUs allow
        self._finished: dict[str, set[str]] = {}  # driver only: finished shards per source, before the run
        self.pending: dict[str, list[str]] = {p.source: [] for p in passes}  # driver only: shards this run does

    def __getstate__(self):  # the workers get the passes, not the driver's bookkeeping
        return {**self.__dict__, "_finished": {}, "pending": {}}

    def units(self, ctx: DownloadContext):
        per_shard = ctx.settings.samples_per_shard
        for p in self.passes.values():
            shard_id = p.first_shard
            for path, rows in p.lists:
                for start in range(0, rows, per_shard):
                    yield Unit(shard_name(shard_id), (path, start, min(rows, start + per_shard), shard_id), p.source)
                    shard_id += 1

    def done(self, unit: Unit, ctx: DownloadContext) -> bool:
        if unit.group not in self._finished:
            storage = ctx.storage()
            self._finished[unit.group] = set(finished_shard_ids(storage, raw_folder(storage, unit.group)))
        finished = unit.name in self._finished[unit.group]
        if not finished:
            self.pending[unit.group].append(unit.name)
        return finished

    def run_unit(self, unit: Unit, ctx: DownloadContext) -> Counters:
        path, start, stop, shard_id = unit.spec
        try:
            return download_shard(ctx, unit.group, path, start, stop, shard_id)
        except Exception as err:  # the error's own type stays, so the executor knows what is transient
            err.add_note(f"download: source {unit.group!r}, shard {unit.name} (rows {start}-{stop} of {path})")
            raise

    def nodes(self, storage: Storage, source: str) -> Counter:
        """After :func:`~pipelines.stage.execute`: the Ray node of each shard this run downloaded."""
        nodes: Counter = Counter()
        for name in self.pending.get(source, []):
            stats = storage.read_json(posixpath.join(raw_folder(storage, source), f"{name}_stats.json"))
            nodes[stats.get(NODE_KEY, "unknown")] += 1
        return nodes


def download_shard(ctx: DownloadContext, source: str, url_list: str, start: int, stop: int, shard_id: int) -> Counters:
    """Download rows ``[start, stop)`` of ``url_list`` as shard ``shard_id`` of ``source``; its counters."""
    require("img2dataset", "download")
    storage = ctx.storage()
    use_storage_options(storage.protocol, storage.options)
    rows = read_rows(storage, url_list, start, stop)
    out, name = raw_folder(storage, source), shard_name(shard_id)
    private = posixpath.join(out, "_inflight", f"{name}-{uuid.uuid4().hex[:8]}")
    storage.makedirs(private)
    try:
        with tempfile.TemporaryDirectory(prefix="vlmix-shard-") as staging:
            arrow_file = os.path.join(staging, f"{shard_id}.feather")  # img2dataset's reader's staging format
            columns = _write_input(rows, arrow_file)
            downloader = _downloader(ctx.settings, storage.uri(private), columns)
            with bounded_download(_policy(ctx.settings, rows)):  # undone after: Ray reuses this process
                downloader.download_shard((shard_id, arrow_file))
        counters = _counters(storage, posixpath.join(private, f"{name}.parquet"))
        _record_node(storage, posixpath.join(private, f"{name}_stats.json"))
        for suffix in (".tar", ".parquet", "_stats.json"):  # the stats file marks completion: last
            storage.fs.mv(posixpath.join(private, name + suffix), posixpath.join(out, name + suffix))
    finally:
        with contextlib.suppress(FileNotFoundError):  # object stores drop a "folder" with its last object
            storage.remove(private)
    return counters


def _write_input(rows: pa.Table, path: str) -> list[str]:
    """The shard's rows as img2dataset's reader stages them; returns its column list, in its order."""
    carried = [c for c in rows.column_names if c not in _NOT_CARRIED]
    columns = carried + (["caption"] if "caption" in rows.column_names else [])
    if "expected_sha256" in rows.column_names:  # the reader renames the hash to verify to its type
        rows = rows.rename_columns(["sha256" if c == "expected_sha256" else c for c in rows.column_names])
        columns.append("sha256")
    columns.append("url")
    table = rows.select(columns)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return columns


def _downloader(settings: Download, output_uri: str, columns: list[str]):
    from img2dataset.downloader import Downloader
    from img2dataset.writer import WebDatasetSampleWriter

    resizer = GuardedResizer(
        image_size=settings.max_image_side, resize_mode="keep_ratio_largest", resize_only_if_bigger=True,
        encode_format="jpg", skip_reencode=True, max_pixels=settings.max_pixels,
    )
    verify = "sha256" in columns
    return Downloader(
        sample_writer_class=WebDatasetSampleWriter, resizer=resizer, thread_count=settings.threads_per_worker,
        save_caption=True, extract_exif=False, output_folder=output_uri, column_list=columns,
        timeout=settings.timeout_s, number_sample_per_shard=settings.samples_per_shard,
        oom_shard_count=SHARD_DIGITS, compute_hash="sha256", verify_hash_type="sha256" if verify else None,
        encode_format="jpg", retries=0, user_agent_token=settings.user_agent_token,
        disallowed_header_directives=["noai", "noimageai", "noindex", "noimageindex"]
        if settings.respect_noai_headers else None,
    )


def _policy(settings: Download, rows: pa.Table) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=settings.max_body_bytes, budget_s=settings.url_budget_s, max_redirects=settings.max_redirects,
        per_host=settings.max_connections_per_host, max_wait_s=settings.max_retry_after_s,
        not_before=retry.not_before(rows),
    )


def _counters(storage: Storage, results: str) -> Counters:
    """Samples written and failed URLs by reason, from the shard's own result table."""
    table = storage.read_parquet(results, columns=["status", "error_message"])
    counters = Counters()
    for status, error in zip(table["status"].to_pylist(), table["error_message"].to_pylist(), strict=True):
        if status == "success":
            counters.samples += 1
        else:
            counters.drops[classify_error(error)[0]] += 1
    return counters


def _record_node(storage: Storage, stats_path: str) -> None:
    """Add the Ray node this runs on (``local`` without Ray) to the shard's stats, for DownloadStats.nodes."""
    import importlib.util

    node = "local"
    if importlib.util.find_spec("ray") is not None:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else node
    storage.write_json(stats_path, {**storage.read_json(stats_path), NODE_KEY: node})


def use_storage_options(protocol: str, options: dict) -> None:
    """Make ``storage.options`` the defaults of every fsspec filesystem of ``protocol`` in this process.

    img2dataset opens its outputs with ``fsspec.core.url_to_fs(uri)``, without options.
    """
    import fsspec

    if options and protocol not in ("file", "local"):
        fsspec.config.conf.setdefault(protocol, {}).update(options)
