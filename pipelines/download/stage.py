"""The download stage: URL list -> filtered list -> img2dataset shards on Ray -> retry pass -> stats.

Layout under ``<root>/raw/<source>/``:

- ``_urls/part-NNNNN.parquet``: the URL list after the column filters (one per input file);
- ``NNNNN.tar|.parquet|_stats.json``: img2dataset's shards. A shard is complete when its
  ``_stats.json`` exists: each shard is written in a private folder and moved into place, stats
  last, so a killed run leaves no half shard under a final name;
- ``_retry<r>/urls.parquet``: the retryable failures of the previous pass (timeouts, 5xx,
  connection resets; never 404; a too_slow URL once at most; a 429/503 with the time its
  ``Retry-After`` allows), downloaded again into shards numbered after the first pass
  (:mod:`pipelines.download.retry`);
- ``_vlmix_download.json``: the stage's counters, written last: the source's completion marker.

A rerun skips complete shards and redoes the rest; shard contents (and so sample keys) depend only
on the filtered URL list, so the final set of keys is the same however often the run was killed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import posixpath
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines._imports import require
from pipelines.download import filters as url_filters
from pipelines.download import retry
from pipelines.download.fetch import FetchPolicy
from pipelines.download.guards import GuardedResizer, bounded_download, classify_error
from pipelines.download.retry import ORIGIN_KEY
from pipelines.download.settings import Download
from pipelines.layout.raw import finished_shard_ids
from pipelines.progress import Progress
from pipelines.source import Source
from pipelines.storage import Storage

log = logging.getLogger(__name__)

STATS_FILE = "_vlmix_download.json"
_OOM_SHARD_COUNT = 5  # digits of a shard id, as img2dataset names them
_SHARD_ATTEMPTS = 3  # tries of a shard whose whole task failed (not single URLs: those are counted)


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

    def check_balance(self) -> None:
        accounted = sum(self.filtered.values()) + self.downloaded + sum(self.failed.values())
        if accounted != self.urls:
            raise RuntimeError(f"{self.source}: {self.urls} URLs but {accounted} accounted for: {self.to_json()}")


def download_source(settings: Download, source: Source, storage: Storage, progress: bool = True) -> DownloadStats:
    """Download one URL-list source into ``<root>/raw/<source>/`` and return its stats (resumable)."""
    if source.images_from is not None:
        raise ValueError(f"source {source.name!r} reuses {source.images_from!r}'s images: nothing to download")
    out = storage.path("raw", source.name)
    if storage.exists(posixpath.join(out, STATS_FILE)):
        log.info("%s: already downloaded, skipping", source.name)
        return DownloadStats.from_json(storage.read_json(posixpath.join(out, STATS_FILE)))
    started = time.monotonic()
    stats = DownloadStats(source=source.name)
    url_dir = posixpath.join(out, "_urls")
    rows_per_file = _filter_url_lists(source, storage, url_dir, stats)
    # img2dataset numbers shards across input files consecutively, ceil(rows / per_shard) per file.
    first_pass_shards = sum(math.ceil(rows / settings.samples_per_shard) for rows in rows_per_file)
    _run_pass(settings, source, storage, out, url_dir, 0, progress, label=f"{source.name}", nodes=stats.nodes)
    previous_start, next_start = 0, first_pass_shards
    for round_number in range(1, settings.retry_rounds + 1):
        retry_list = retry.retry_list(storage, out, previous_start, next_start, round_number,
                                      settings.max_retry_after_s)
        if retry_list is None:
            break
        retry_shards = math.ceil(retry_list[1] / settings.samples_per_shard)
        log.info("%s: retry pass %d over %d URLs", source.name, round_number, retry_list[1])
        _run_pass(settings, source, storage, out, retry_list[0], next_start, progress,
                  label=f"{source.name} retry {round_number}", nodes=stats.nodes)
        previous_start, next_start = next_start, next_start + retry_shards
    _count_outcomes(storage, out, stats)
    storage.remove(posixpath.join(out, "_tmp"))
    storage.remove(posixpath.join(out, "_inflight"))
    stats.seconds = time.monotonic() - started
    stats.check_balance()
    storage.write_json(posixpath.join(out, STATS_FILE), stats.to_json())
    return stats


def download_sources(sources: list[Source], settings: Download, storage: Storage,
                     progress: bool = True) -> dict[str, DownloadStats]:
    """Download each URL-list source in turn (its shards as Ray tasks; Ray must be up: ``ensure_ray``)."""
    return {source.name: download_source(settings, source, storage, progress) for source in sources}


def _filter_url_lists(source: Source, storage: Storage, url_dir: str, stats: DownloadStats) -> list[int]:
    """Filter each input file into ``_urls/part-NNNNN.parquet``; return the kept rows per file."""
    filter_stats_path = posixpath.join(url_dir, "_filter_stats.json")
    if storage.exists(filter_stats_path):  # filtering is deterministic: reuse a finished one
        saved = storage.read_json(filter_stats_path)
        stats.urls, stats.filtered = saved["urls"], Counter(saved["filtered"])
        return saved["rows_per_file"]
    rows_per_file = []
    for index, location in enumerate(_expand_locations(source, storage)):
        table = _read_url_list(location, storage)
        stats.urls += len(table)
        try:
            kept, dropped = url_filters.filter_url_list(table, source.columns, source.filters)
        except url_filters.MissingColumn as err:
            raise ValueError(f"source {source.name!r}, file {location}: {err}") from None
        stats.filtered.update(dropped)
        storage.write_parquet(posixpath.join(url_dir, f"part-{index:05d}.parquet"), _select_columns(kept, source))
        rows_per_file.append(len(kept))
    saved = {"urls": stats.urls, "filtered": dict(stats.filtered), "rows_per_file": rows_per_file}
    storage.write_json(filter_stats_path, saved)
    return rows_per_file


def _url_fs(location: str, storage: Storage):
    """The filesystem of a source location; one on the storage root's protocol shares its options."""
    import fsspec

    protocol = location.split("://", 1)[0] if "://" in location else "file"
    options = storage.options if protocol == storage.protocol else {}
    return fsspec.core.url_to_fs(location, **options)


def _expand_locations(source: Source, storage: Storage) -> list[str]:
    found: list[str] = []
    for location in source.locations:
        fs, path = _url_fs(location, storage)
        matches = sorted(fs.glob(path)) if any(ch in path for ch in "*?[") else ([path] if fs.exists(path) else [])
        if not matches:
            hint = f"; {source.obtain}" if source.obtain else ""
            raise FileNotFoundError(f"source {source.name!r}: nothing at {location!r}{hint}")
        prefix = location.split("://", 1)[0] + "://" if "://" in location else ""
        found.extend(prefix + match for match in matches)
    return found


def _read_url_list(location: str, storage: Storage) -> pa.Table:
    fs, path = _url_fs(location, storage)
    if path.endswith(".parquet"):
        return pq.read_table(path, filesystem=fs)
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json

    with fs.open(path, "rb", compression="infer") as f:
        if ".csv" in path:
            return pa_csv.read_csv(f)
        if ".tsv" in path:
            return pa_csv.read_csv(f, parse_options=pa_csv.ParseOptions(delimiter="\t"))
        if ".jsonl" in path or ".json" in path:
            return pa_json.read_json(f)
    raise ValueError(f"{location}: unsupported URL list format (use .parquet, .csv, .tsv or .jsonl)")


def _select_columns(table: pa.Table, source: Source) -> pa.Table:
    """Keep the columns img2dataset should carry into the shards, under the names it expects."""
    columns = source.columns
    wanted = {columns.url: "url"}
    if columns.caption and columns.caption in table.column_names:
        wanted[columns.caption] = "caption"
    for name in columns.extra:
        if name not in table.column_names:
            raise ValueError(f"source {source.name!r}: extra column {name!r} is not in the URL list")
        wanted[name] = name
    if columns.sha256:
        wanted[columns.sha256] = "expected_sha256"
    return table.select(list(wanted)).rename_columns(list(wanted.values()))


def _run_pass(settings: Download, source: Source, storage: Storage, out: str, url_list: str,
              start_shard: int, progress: bool, label: str, nodes: Counter) -> None:
    """One img2dataset pass over ``url_list`` into ``out``, shards numbered from ``start_shard``."""
    ray = require("ray", "download")
    require("img2dataset", "download")
    _use_storage_options(storage.protocol, storage.options)
    from img2dataset.downloader import Downloader
    from img2dataset.reader import Reader
    from img2dataset.writer import WebDatasetSampleWriter
    from tqdm import tqdm

    # img2dataset's Reader stages each shard's input there, and its downloader deletes it when done.
    # A folder per pass and run: a worker orphaned by a killed run must not delete this run's inputs.
    staging = posixpath.join(out, "_tmp", uuid.uuid4().hex[:12])
    storage.makedirs(staging)
    done = {int(shard) for shard in finished_shard_ids(storage, out)}
    sample = pq.read_schema(_first_parquet(storage, url_list), filesystem=storage.fs)
    carried = [c for c in sample.names if c not in ("url", "caption", "expected_sha256", retry.NOT_BEFORE)]
    reader = Reader(
        storage.uri(url_list),
        "parquet", "url", "caption" if "caption" in sample.names else None,
        "expected_sha256" if "expected_sha256" in sample.names else None,
        "sha256" if "expected_sha256" in sample.names else None,
        carried or None, settings.samples_per_shard, done,
        storage.uri(staging), start_shard,
    )
    resizer = GuardedResizer(
        image_size=settings.max_image_side, resize_mode="keep_ratio_largest", resize_only_if_bigger=True,
        encode_format="jpg", skip_reencode=True, max_pixels=settings.max_pixels,
    )
    downloader = Downloader(
        sample_writer_class=WebDatasetSampleWriter, resizer=resizer, thread_count=settings.threads_per_worker,
        save_caption=True, extract_exif=False, output_folder=storage.uri(out), column_list=reader.column_list,
        timeout=settings.timeout_s, number_sample_per_shard=settings.samples_per_shard,
        oom_shard_count=_OOM_SHARD_COUNT, compute_hash="sha256",
        verify_hash_type="sha256" if "expected_sha256" in sample.names else None, encode_format="jpg",
        retries=0, user_agent_token=settings.user_agent_token,
        disallowed_header_directives=["noai", "noimageai", "noindex", "noimageindex"]
        if settings.respect_noai_headers else None,
    )
    task = ray.remote(num_cpus=settings.cpus_per_worker, max_retries=2)(_download_shard)
    limit = settings.max_workers or max(1, int(ray.available_resources().get("CPU", 1) // settings.cpus_per_worker))
    shards = iter(reader)
    in_flight: dict = {}  # task -> (shard, attempt)
    resubmit: list = []
    failed: list[int] = []
    bar = tqdm(desc=f"download {label}", unit="shard", disable=not progress)
    shards_done = Progress("download", total=None, unit="shards", label=label)  # to the terminal and Prefect
    policy = FetchPolicy(
        max_bytes=settings.max_body_bytes, budget_s=settings.url_budget_s, max_redirects=settings.max_redirects,
        per_host=settings.max_connections_per_host, max_wait_s=settings.max_retry_after_s,
        not_before=retry.not_before(storage, url_list),
    )

    def submit(shard, attempt: int) -> None:
        in_flight[task.remote(downloader, shard, storage.uri(out), policy, storage.options)] = (shard, attempt)

    with bar:
        while True:
            while len(in_flight) < limit and (resubmit or (shard := _quietly(next, shards, None)) is not None):
                submit(*(resubmit.pop() if resubmit else (shard, 1)))
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            shard, attempt = in_flight.pop(ready[0])
            shard_id, ok, node = ray.get(ready[0])
            nodes[node] += 1
            stats_path = posixpath.join(out, f"{shard_id:0{_OOM_SHARD_COUNT}d}_stats.json")
            if ok or storage.exists(stats_path):
                bar.update(1)  # done (possibly by a worker of an earlier, killed run: same inputs, same shard)
                shards_done.advance(**_shard_counts(storage, stats_path))
            elif attempt < _SHARD_ATTEMPTS:  # a whole shard failing is rare and worth one more try
                log.warning("%s: shard %d failed (attempt %d), trying again", label, shard_id, attempt)
                resubmit.append((shard, attempt + 1))
            else:
                failed.append(shard_id)
                bar.update(1)
    shards_done.done()
    if failed:
        raise RuntimeError(f"{label}: shards {sorted(failed)} failed (see the worker logs); rerun to resume")


def _shard_counts(storage: Storage, stats_path: str) -> dict[str, int]:
    """Samples and failed URLs of one finished shard, from img2dataset's stats (for progress lines only)."""
    try:
        stats = storage.read_json(stats_path)
        return {"samples": int(stats.get("successes", 0)),
                "drops": int(stats.get("count", 0)) - int(stats.get("successes", 0))}
    except (OSError, ValueError):
        return {}


def _quietly(function, *args):
    """Call ``function`` with its prints (img2dataset's reader narrates on stdout) silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def _use_storage_options(protocol: str, options: dict) -> None:
    """Make ``storage.options`` the defaults of every fsspec filesystem of ``protocol`` in this process.

    img2dataset opens its inputs and outputs with ``fsspec.core.url_to_fs(uri)``, without options.
    """
    import fsspec

    if options and protocol not in ("file", "local"):
        fsspec.config.conf.setdefault(protocol, {}).update(options)


def _download_shard(downloader, shard, out_uri: str, policy: FetchPolicy, storage_options: dict):
    """Ray task: download one shard into a private folder, then move it into place, stats last."""
    import fsspec
    import ray

    if "://" in out_uri:
        _use_storage_options(out_uri.split("://", 1)[0], storage_options)

    shard_id = shard[0]
    private = f"{out_uri}/_inflight/{shard_id:0{_OOM_SHARD_COUNT}d}-{uuid.uuid4().hex[:8]}"
    worker = copy.copy(downloader)
    worker.output_folder = private
    fs, private_path = fsspec.core.url_to_fs(private)
    fs.makedirs(private_path, exist_ok=True)
    with bounded_download(policy):  # undone after: Ray reuses this process for other tasks
        ok, _ = worker(shard)
    if ok:
        _, out_path = fsspec.core.url_to_fs(out_uri)
        name = f"{shard_id:0{_OOM_SHARD_COUNT}d}"
        for suffix in (".tar", ".parquet", "_stats.json"):  # the stats file marks completion: last
            fs.mv(f"{private_path}/{name}{suffix}", f"{out_path}/{name}{suffix}")
    with contextlib.suppress(FileNotFoundError):  # object stores drop a "folder" with its last object
        fs.rm(private_path, recursive=True)
    return shard_id, ok, ray.get_runtime_context().get_node_id()


def _first_parquet(storage: Storage, url_list: str) -> str:
    if url_list.endswith(".parquet"):
        return url_list
    files = storage.glob(posixpath.join(url_list, "*.parquet"))
    if not files:
        raise FileNotFoundError(f"no URL list files under {url_list}")
    return files[0]


def _count_outcomes(storage: Storage, out: str, stats: DownloadStats) -> None:
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
