"""The OCR stage: raw img2dataset shards in, one OCR corpus Parquet file per shard out, on Ray Data.

    read shard (Ray task) ──> OCR actor pool (decode, OCR, reading order, filters) ──> driver
                                                                  writes each shard when all its rows are in

Only complete raw shards (with ``_stats.json``) are read, and only those without a finished
corpus file, so a rerun after a crash redoes exactly the unfinished shards. Each reader task
ends its shard with a marker row carrying the shard's sample count; the driver writes a shard
(temporary name, then rename) as soon as that many rows have come back, so a long run keeps
its finished shards when it is killed. The stage stats name the Ray node each image was read on
(``nodes``: node id -> images, this run), so placement on a cluster can be checked.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa

from pipelines.storage import Storage

from . import corpus
from .filters import apply_filters
from .reading_order import reading_order
from .settings import OcrSettings

log = logging.getLogger(__name__)

_COUNT = "shard_samples"  # marker rows carry the shard's sample count here; -1 on sample rows
_NODE = "ocr_node"  # the Ray node id of the actor that read the row; counted, not written
_OUT_SCHEMA = corpus.SCHEMA.append(pa.field(_COUNT, pa.int64())).append(pa.field(_NODE, pa.string()))


def read_raw_shard(root: str, options: dict, source: str, shard: str) -> list[dict]:
    """All samples of one raw shard, with their image bytes, then the end-of-shard marker row."""
    from pipelines.layout.raw import iter_raw_shard, resolve_uri

    storage = Storage(root, options)
    rows = []
    with storage.fs.open(storage.path("raw", source, f"{shard}.tar"), "rb") as tar:
        for sample in iter_raw_shard(storage, source, shard):
            assert resolve_uri(storage, sample.image.uri).endswith(f"{shard}.tar")
            tar.seek(sample.image.offset)
            rows.append(
                {
                    "key": sample.key,
                    "shard": shard,
                    "image": tar.read(sample.image.size),
                    "image_uri": sample.image.uri,
                    "image_offset": sample.image.offset,
                    "image_size": sample.image.size,
                    "image_format": sample.image_format,
                    "url": str(sample.meta.get("url") or ""),
                    _COUNT: -1,
                }
            )
    marker = {"key": "", "shard": shard, "image": b"", "image_uri": "", "image_offset": 0, "image_size": 0}
    rows.append({**marker, "image_format": "", "url": "", _COUNT: len(rows)})
    return rows


def decode_rgb(data: bytes) -> np.ndarray | None:
    """The image as an HxWx3 uint8 RGB array, or None when the bytes are not a decodable image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


class OcrActor:
    """One OCR engine in a Ray actor: decodes, reads, orders and filters a batch of samples."""

    def __init__(self, settings_json: str, source: str, language: str) -> None:
        import ray

        from .engines import build_engine

        settings = OcrSettings.model_validate_json(settings_json)
        if not settings.threads_per_actor and settings.device == "cpu":
            # One runtime thread per reserved CPU, so a pool of actors does not oversubscribe the node.
            settings = settings.model_copy(
                update={"threads_per_actor": max(1, round(settings.cpus_per_actor))}
            )
        self.settings = settings
        self.source = source
        self.language = language
        self.engine = build_engine(settings)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["key"])
        images, readable = [], []
        for i in range(n):
            if batch[_COUNT][i] >= 0:
                continue
            img = decode_rgb(batch["image"][i])
            if img is not None:
                images.append(img)
                readable.append(i)
        results = dict(zip(readable, self.engine.read(images), strict=True))
        info = self.engine.info
        rows = []
        for i in range(n):
            data = batch["image"][i]
            row = {
                "key": batch["key"][i],
                "source": self.source,
                "shard": batch["shard"][i],
                "language": self.language,
                "image_uri": batch["image_uri"][i],
                "image_offset": int(batch["image_offset"][i]),
                "image_size": int(batch["image_size"][i]),
                "image_format": batch["image_format"][i],
                "image_sha256": hashlib.sha256(data).hexdigest() if data else "",
                "url": batch["url"][i],
                "width": 0,
                "height": 0,
                "lines": [],
                "text": "",
                "text_area": 0.0,
                "low_score_lines": 0,
                "drop_reason": None,
                "engine": info.engine,
                "engine_version": info.engine_version,
                "det_model": info.det_model,
                "rec_model": info.rec_model,
                _COUNT: int(batch[_COUNT][i]),
                _NODE: self.node,
            }
            if row[_COUNT] < 0:
                result = results.get(i)
                if result is None:
                    row["drop_reason"] = "undecodable_image"
                else:
                    outcome = apply_filters(result, self.settings.filters)
                    lines = reading_order(outcome.lines)
                    row |= {
                        "width": result.width,
                        "height": result.height,
                        "lines": [
                            {"text": ln.text, "quad": [list(p) for p in ln.quad], "score": ln.score}
                            for ln in lines
                        ],
                        "text": "\n".join(ln.text for ln in lines),
                        "text_area": outcome.text_area,
                        "low_score_lines": outcome.low_score_lines,
                        "drop_reason": outcome.drop_reason,
                    }
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=_OUT_SCHEMA)


def pending_shards(storage: Storage, source: str) -> tuple[list[str], list[str]]:
    """(complete raw shards, those of them without a finished corpus file)."""
    from pipelines.layout.raw import complete_shards

    shards = complete_shards(storage, source)
    done = corpus.finished_shards(storage, source)
    return shards, [s for s in shards if s not in done]


def run_ocr_stage(
    root: str,
    source: str,
    language: str,
    settings: OcrSettings | None = None,
    ray_address: str | None = None,
    storage_options: dict | None = None,
) -> dict:
    """OCR every complete, unfinished raw shard of ``source``; returns the stage stats.

    ``root`` is a local path or an fsspec URI (``s3://bucket/mix``); ``language`` is the
    language of the text in the images (``zh`` for Wukong, ``en`` for LAION-COCO);
    ``ray_address`` None starts local Ray, else joins that cluster.

    >>> stats = run_ocr_stage("/data/mix", "wukong", "zh", OcrSettings(concurrency=4))  # doctest: +SKIP
    >>> stats["dropped"]  # doctest: +SKIP
    {'no_text': 1203, 'undecodable_image': 2, ...}
    """
    settings = settings or OcrSettings()
    storage = Storage(root, storage_options)
    shards, pending = pending_shards(storage, source)
    log.info("OCR %s: %d complete raw shards, %d to do", source, len(shards), len(pending))
    started = time.time()
    nodes: Counter = Counter()
    if pending:
        nodes = _run(
            storage, root, dict(storage_options or {}), source, language, settings, pending, ray_address
        )
    return corpus.write_stage_stats(
        storage,
        source,
        {
            "source": source,
            "language": language,
            "raw_shards": len(shards),
            "shards_this_run": len(pending),
            "seconds_this_run": round(time.time() - started, 3),
            "nodes": dict(sorted(nodes.items())),  # Ray node id -> images OCRed there (this run)
            "settings": settings.model_dump(),
        },
    )


def _wait_message(ray, source: str, settings: OcrSettings) -> None:
    """Say so when no OCR actor can start yet for want of GPUs: Ray Data then waits, it does not fail."""
    if not settings.gpus_per_actor:
        return
    free = ray.available_resources().get("GPU", 0.0)
    total = ray.cluster_resources().get("GPU", 0.0)
    if free < settings.gpus_per_actor:
        log.warning(
            "OCR %s: each actor needs %g GPU(s); the cluster has %g free of %g. Waiting for GPUs "
            "(a GPU node joining or another job freeing one); the stage starts when they are there.",
            source,
            settings.gpus_per_actor,
            free,
            total,
        )


def _run(storage, root, options, source, language, settings, pending, ray_address) -> Counter:
    """OCR the pending shards on Ray, writing each as it completes; returns images per Ray node."""
    from pipelines._imports import require
    from pipelines.progress import Progress
    from pipelines.runtime import ensure_ray

    ray = require("ray", "download")
    ensure_ray(ray_address)
    _wait_message(ray, source, settings)
    shards = ray.data.from_items([{"shard": s} for s in pending], override_num_blocks=len(pending))
    samples = shards.flat_map(
        lambda row: read_raw_shard(root, options, source, row["shard"]),
        num_cpus=0,  # I/O bound; the cores belong to the OCR actors (a fraction here starves Ray Data's budget)
    )
    ocr_rows = samples.map_batches(
        OcrActor,
        fn_constructor_kwargs={
            # What builds and runs the engine; the GPUs Ray reserves for an actor are the driver's business.
            "settings_json": settings.model_dump_json(exclude={"gpus_per_actor"}),
            "source": source,
            "language": language,
        },
        batch_size=settings.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=settings.concurrency),
        num_cpus=settings.cpus_per_actor,
        num_gpus=settings.gpus_per_actor or None,
    )
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    received: dict[str, int] = defaultdict(int)
    expected: dict[str, int] = {}
    nodes: Counter = Counter()
    progress = Progress("ocr", total=len(pending), unit="shards", label=source)
    for block in ocr_rows.iter_batches(batch_format="pyarrow", batch_size=None):
        counts = block.column(_COUNT).to_pylist()
        shard_ids = block.column("shard").to_pylist()
        for shard in set(shard_ids):
            mask = [s == shard and c < 0 for s, c in zip(shard_ids, counts, strict=True)]
            rows = block.filter(pa.array(mask))
            nodes.update(rows.column(_NODE).to_pylist())
            parts[shard].append(rows.drop_columns([_COUNT, _NODE]))
            received[shard] += rows.num_rows
            for s, c in zip(shard_ids, counts, strict=True):
                if s == shard and c >= 0:
                    expected[shard] = c
            finished = expected.get(shard) == received[shard]
            if finished:
                corpus.write_shard(storage, source, shard, pa.concat_tables(parts.pop(shard)))
                log.info("OCR %s: shard %s done (%d images)", source, shard, received[shard])
            progress.advance(units=int(finished), samples=rows.num_rows,
                             drops=rows.num_rows - rows.column("drop_reason").null_count)
    progress.done()
    unfinished = sorted(set(pending) - {s for s in expected if expected[s] == received[s]})
    if unfinished:
        raise RuntimeError(
            f"OCR {source}: shards {unfinished} did not return all their rows; nothing written for them"
        )
    return nodes
