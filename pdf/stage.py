"""The PDF stage: PDF files in; page images, text-layer OCR samples and pages for the OCR stage out.

    units: the source's PDFs (``locations``: files, globs, brace ranges, local or s3://), in
    ``files_per_unit`` chunks, or rows of its URL lists (:mod:`pdf.urls`, fetched with the download
    stage's guards) ──> Ray task per unit: each PDF opened in the sandboxed renderer
    (:mod:`pdf.sandbox`), each page rendered and read, decided (:mod:`pdf.decide`), written

What one unit ``NNNNN`` of source ``S`` writes, in this order (the last is its completion marker):

- ``raw/S/NNNNN.tar`` (+ ``_stats.json``): the pages whose text layer is their transcription, as
  ``<key>.jpg`` + ``<key>.json`` (the PDF, the page number, the decision) in the download stage's
  raw-shard layout (:mod:`pipelines.layout.raw`);
- ``raw/S-ocr/NNNNN.tar`` (+ ``_stats.json``), when the source has ``ocr`` and the unit has pages that
  need OCR: those pages, in the same layout, which the OCR stage reads like any downloaded images
  (its task tables land in ``tasks/S/`` too, so both halves are one dataset of the mixture);
- ``pdf/S/NNNNN.json``: the unit's counters (:mod:`pdf.stats`, what ``vlmix pdf`` adds up);
- ``tasks/S/NNNNN-text.parquet``: the text-layer pages' OCR samples (:mod:`pdf.samples`).

Counters: ``samples`` (text-layer samples), ``drops`` (files: ``too_large``, ``encrypted``,
``corrupt``; pages: ``too_many_pages``, ``render_timeout``, ``render_memory``, ``render_error``,
``render_abandoned``, ``blank_page``, ``no_language``, ``needs_ocr`` when the source has no ``ocr``),
and tallies ``pdf_pages`` (``text_layer``, ``ocr``, ``files``; for URL lists ``urls``, ``fetched``,
``recovered_by_retry``, failures in ``drops`` as ``fetch_<reason>``), ``ocr_reasons``,
``pdf_languages`` (text-layer pages per language) and ``pdf_time`` (``rendered`` pages, ``render_s``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import fsspec
from braceexpand import braceexpand

from pipelines.layout.raw import RAW_DIR, relative_uri
from pipelines.layout.task_table import ImageRef, Picture, TaskSample, table_path, write_task_table
from pipelines.phash import hashes
from pipelines.source import Source
from pipelines.stage import Counters, Stage, StageContext, Unit
from pipelines.storage import Storage

from .decide import decide
from .page import PageData
from .samples import conversation
from .settings import PdfSettings
from .stats import read_stats, summary, write_unit_stats
from .urls import Fetcher, count_rows, fetch_all, is_url_list, read_urls

OCR_SUFFIX = "-ocr"  # raw/<source>-ocr: the pages the OCR stage reads
TEXT_SUFFIX = "-text"  # tasks/<source>/<unit>-text.parquet: the text-layer samples
_WILDCARDS = set("*?[")


@dataclass(frozen=True)
class PdfContext(StageContext):
    """The storage root and the PDF stage's settings, shipped to every worker."""

    settings: PdfSettings = field(default_factory=PdfSettings)


def ocr_raw_source(source_name: str) -> str:
    """The raw folder holding a PDF source's pages that need OCR."""
    return source_name + OCR_SUFFIX


def list_pdfs(source: Source, options: dict) -> list[str]:
    """Every PDF (or URL list of PDFs) the source's ``locations`` name (braces expanded, globs listed), sorted.
    Raises FileNotFoundError naming the source (and its ``obtain``) for what matches nothing."""
    found, missing = [], []
    for location in source.locations:
        for name in braceexpand(location):
            fs, path = fsspec.core.url_to_fs(name, **options)
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            matches = sorted(fs.glob(path)) if _WILDCARDS & set(path) else ([path] if fs.exists(path) else [])
            found += [m if protocol in ("file", "local") else f"{protocol}://{m}" for m in matches
                      if not fs.isdir(m)]
            if not matches:
                missing.append(name)
    if missing:
        hint = f"; {source.obtain}" if source.obtain else ""
        raise FileNotFoundError(f"source {source.name!r}: no PDF at {', '.join(missing[:3])}{hint}")
    return sorted(dict.fromkeys(found))


class _Shard:
    """A raw shard built in memory: image + JSON members, and where each image's bytes lie."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w")
        self.count = 0

    def add(self, key: str, page: PageData, meta: dict) -> tuple[int, int]:
        info = tarfile.TarInfo(f"{key}.{page.image_format}")
        info.size = len(page.image)
        # The image's bytes follow its header (a writing tarfile keeps no data offsets).
        offset = self.tar.offset + len(info.tobuf(self.tar.format, self.tar.encoding, self.tar.errors))
        self.tar.addfile(info, io.BytesIO(page.image))
        data = json.dumps(meta, ensure_ascii=False).encode()
        info = tarfile.TarInfo(f"{key}.json")
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        self.count += 1
        return offset, len(page.image)

    def write(self, storage: Storage, folder: str, unit: str) -> str:
        self.tar.close()
        path = storage.path(RAW_DIR, folder, f"{unit}.tar")
        storage.write_bytes(path, self.buffer.getvalue())
        storage.write_json(storage.path(RAW_DIR, folder, f"{unit}_stats.json"),
                           {"count": self.count, "successes": self.count, "status_dict": {"success": self.count}})
        return path


class PdfStage(Stage):
    """The PDF stage for one source (see the module docstring)."""

    name = "pdf"
    unit_kind = "units"

    def __init__(self, source: Source, ocr: bool | None = None, fetch: Fetcher | None = None) -> None:
        self.source = source
        self.ocr = source.ocr is not None if ocr is None else ocr
        self.fetch = fetch  # for URL lists: the flow's guarded downloader (pdf.urls)
        self.label = source.name

    def units(self, ctx: PdfContext) -> Iterator[Unit]:
        found = list_pdfs(self.source, ctx.options)
        files = [uri for uri in found if not is_url_list(uri)]
        step = ctx.settings.files_per_unit
        index = 0
        for start in range(0, len(files), step):
            yield Unit(f"{index:05d}", ("files", *files[start:start + step]), group=self.source.name)
            index += 1
        for uri in (uri for uri in found if is_url_list(uri)):
            if self.fetch is None:
                raise ValueError(f"source {self.source.name!r}: {uri} is a URL list, and this PDF stage was "
                                 "given no downloader (the flow's pdf stage gives it the download stage's)")
            rows = count_rows(uri, ctx.options)
            for start in range(0, rows, step):
                yield Unit(f"{index:05d}", ("urls", uri, start, min(rows, start + step)), group=self.source.name)
                index += 1

    def done(self, unit: Unit, ctx: PdfContext) -> bool:
        storage = ctx.storage()
        return storage.exists(table_path(storage, self.source.name, unit.name + TEXT_SUFFIX))

    def run_unit(self, unit: Unit, ctx: PdfContext) -> Counters:
        storage, settings, name = ctx.storage(), ctx.settings, self.source.name
        text, ocr = _Shard(), _Shard()
        text_uri = relative_uri(storage, storage.path(RAW_DIR, name, f"{unit.name}.tar"))
        counters = Counters(tallies={"pdf_pages": Counter(), "ocr_reasons": Counter(), "pdf_languages": Counter(),
                                     "pdf_time": Counter()})
        drops, pages, reasons = counters.drops, counters.tallies["pdf_pages"], counters.tallies["ocr_reasons"]
        timing = counters.tallies["pdf_time"]
        samples: list[TaskSample] = []
        documents = _documents(unit, ctx, self.source, self.fetch, drops, pages)
        for key, meta, page in _pages(unit, ctx, documents, drops):
            timing["rendered"] += 1
            timing["render_s"] += page.seconds
            decision = decide(page, self.source.language, settings)
            if decision.use == "drop":
                drops[decision.reason] += 1
            elif decision.use == "ocr":
                reasons[decision.reason] += 1
                if not self.ocr:
                    drops["needs_ocr"] += 1
                    continue
                pages["ocr"] += 1
                ocr.add(key, page, {**meta, "decision": "ocr", "reason": decision.reason})
            else:
                pages["text_layer"] += 1
                counters.tallies["pdf_languages"][decision.language] += 1
                offset, size = text.add(key, page, {**meta, "decision": "text", "language": decision.language})
                turns, _ = conversation(decision.lines, page.width, page.height, decision.language, name, key,
                                        settings)
                picture = Picture(ImageRef(text_uri, offset, size), page.image_format,
                                  hashlib.sha256(page.image).hexdigest(), page.width, page.height,
                                  hashes(page.image) if settings.perceptual_hash else None)
                samples.append(TaskSample(source=name, key=key, task=self.source.task, language=decision.language,
                                          images=[picture], conversations=turns, url=meta["url"]))
        text.write(storage, name, unit.name)
        if ocr.count:  # a unit with no page to OCR gives the OCR stage no empty shard
            ocr.write(storage, ocr_raw_source(name), unit.name)
        counters.samples = len(samples)
        write_unit_stats(storage, name, unit.name, counters)  # before the table: the unit's completion marker
        write_task_table(storage, name, unit.name + TEXT_SUFFIX, samples, drops,
                         inputs=len(samples) + sum(drops.values()))
        return counters


def _documents(unit: Unit, ctx: PdfContext, source: Source, fetch: Fetcher | None, drops: Counter,
               tallies: Counter) -> Iterator[tuple[int, str, bytes]]:
    """(index in the unit, where from, bytes) of each PDF of the unit: files read, or URLs fetched."""
    if unit.spec[0] == "urls":
        _, uri, start, stop = unit.spec
        urls = read_urls(uri, ctx.options, source.columns.url, start, stop)
        for row, url, data in fetch_all(urls, fetch, drops, tallies):
            if len(data) > ctx.settings.max_file_mb * 1024 * 1024:
                drops["too_large"] += 1
                continue
            tallies["files"] += 1
            yield row, url, data
        return
    for index, uri in enumerate(unit.spec[1:]):
        tallies["files"] += 1
        data = _read(uri, ctx.options, ctx.settings, drops)
        if data is not None:
            yield index, uri, data


def _pages(unit: Unit, ctx: PdfContext, documents, drops: Counter) -> Iterator[tuple[str, dict, PageData]]:
    """(key, meta, page) for every page of the unit's PDFs that renders; what does not is counted."""
    settings = ctx.settings
    renderer = _renderer(settings)
    for file_index, uri, data in documents:
        count, reason = renderer.open(data, settings.max_pages)
        if reason is not None:
            drops[reason] += 1
            continue
        kept = min(count, settings.max_pages)
        if count > kept:
            drops["too_many_pages"] += count - kept
        for number in range(kept):
            page, reason = renderer.next_page()
            if reason is not None:
                drops[reason] += 1
                if reason in ("render_timeout", "render_memory"):  # the child is gone, and the rest with it
                    if kept - number - 1:
                        drops["render_abandoned"] += kept - number - 1
                    break
                continue
            meta = {"url": f"{uri}#page={number + 1}", "pdf": uri, "page": number + 1,
                    "width": page.width, "height": page.height}
            yield f"{unit.name}_{file_index:04d}_{number:05d}", meta, page


_RENDERERS: dict[str, object] = {}


def _renderer(settings: PdfSettings):
    """This worker process's rendering child for ``settings``: started once, kept across units (a Ray
    worker does many), replaced by the sandbox itself when killed; it exits when the worker does."""
    import atexit

    from .sandbox import Renderer

    key = settings.model_dump_json()
    if key not in _RENDERERS:
        for old in _RENDERERS.values():
            old.close()
        _RENDERERS.clear()
        _RENDERERS[key] = renderer = Renderer(settings)
        atexit.register(renderer.close)
    return _RENDERERS[key]


def _read(uri: str, options: dict, settings: PdfSettings, drops: Counter) -> bytes | None:
    """The file's bytes, or None (counted ``too_large``) when it is over ``max_file_mb``."""
    fs, path = fsspec.core.url_to_fs(uri, **options)
    if fs.size(path) > settings.max_file_mb * 1024 * 1024:
        drops["too_large"] += 1
        return None
    with fs.open(path, "rb") as f:
        return f.read()


def pdf_summary(counters: Counters) -> dict:
    """A source's counters as the flow reports them (:func:`pdf.stats.summary`)."""
    return summary(counters)


def run_pdf_stage(sources: list[Source], settings: PdfSettings, root: str, options: dict | None = None,
                  fetch: Fetcher | None = None) -> dict:
    """Every PDF source through the stage (on Ray when it is up); per source, the totals over all its
    finished units, this run's and earlier ones' (:func:`pdf.stats.read_stats`), and ``units_this_run``.
    ``fetch``: the downloader for URL lists (:mod:`pdf.urls`)."""
    from pipelines.stage import execute

    ctx = PdfContext(root, dict(options or {}), settings)
    storage = ctx.storage()
    summary = {}
    for source in sources:
        report = execute(PdfStage(source, fetch=fetch), ctx)
        try:
            totals = read_stats(storage, source.name)
        except FileNotFoundError:  # no unit at all (URL lists without a row)
            totals = {"units": 0, **pdf_summary(report.groups.get(source.name, report.counters))}
        summary[source.name] = {**totals, "units_this_run": report.units - report.skipped}
    return summary


__all__ = ["OCR_SUFFIX", "PdfContext", "PdfStage", "list_pdfs", "ocr_raw_source", "run_pdf_stage"]
