"""What a PDF source's run made of its pages, unit by unit and in total: the ``pdf-stats`` of the flow
and of ``vlmix pdf``.

Each unit writes its counters to ``<root>/pdf/<source>/<unit>.json`` before its task table (the
unit's completion marker), so the totals over a source's units are the whole run's, resumed runs
included, without reading a page again:

- ``pages``: ``files`` read, ``text_layer`` pages (samples from the text layer), ``ocr`` pages (handed
  to the OCR stage); for URL lists ``urls``, ``fetched``, ``recovered_by_retry``;
- ``ocr_reasons``: why each OCR page's text layer was not its text (:mod:`pdf.decide`);
- ``drops``: files and pages dropped, by reason (filters, render limits, fetch failures);
- ``languages``: text-layer pages per language, by script (OCR pages are labelled by the OCR stage);
- ``render_s``: seconds the rendering process spent on pages (render, JPEG, text layer, ink), and
  ``render_ms_per_page`` over the pages it rendered.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipelines.stage import Counters
from pipelines.storage import Storage

STATS_DIR = "pdf"


def unit_stats_path(storage: Storage, source: str, unit: str) -> str:
    return storage.path(STATS_DIR, source, f"{unit}.json")


def write_unit_stats(storage: Storage, source: str, unit: str, counters: Counters) -> None:
    storage.write_json(unit_stats_path(storage, source, unit), counters.to_json())


def summary(counters: Counters) -> dict[str, Any]:
    """A source's counters as the flow and ``vlmix pdf`` report them."""
    tallies = counters.tallies
    timing = tallies.get("pdf_time", {})
    rendered = int(timing.get("rendered", 0))
    render_s = float(timing.get("render_s", 0.0))
    return {"samples": counters.samples, "pages": dict(sorted(tallies.get("pdf_pages", {}).items())),
            "ocr_reasons": dict(sorted(tallies.get("ocr_reasons", {}).items())),
            "languages": dict(sorted(tallies.get("pdf_languages", {}).items())),
            "drops": dict(sorted(counters.drops.items())),
            "render_s": round(render_s, 3),
            "render_ms_per_page": round(1000 * render_s / rendered, 1) if rendered else None}


def pdf_sources(storage: Storage) -> list[str]:
    """The sources with unit stats under the root, sorted."""
    return sorted({path.rstrip("/").rsplit("/", 2)[-2] for path in storage.glob(storage.path(STATS_DIR, "*", "*.json"))})


def read_stats(storage: Storage, source: str) -> dict[str, Any]:
    """The totals of every finished unit of ``source`` (:func:`summary`), and ``units``: how many.
    Raises FileNotFoundError naming the source when none has finished."""
    paths = storage.glob(storage.path(STATS_DIR, source, "*.json"))
    if not paths:
        raise FileNotFoundError(f"source {source!r}: no PDF stage unit has finished under "
                                f"{storage.path(STATS_DIR, source)} (run the pdf stage first)")
    total = Counters()
    for path in paths:
        data = storage.read_json(path)
        total.add(Counters(data.get("samples", 0), Counter(data.get("drops", {})),
                           {name: Counter(counts) for name, counts in data.get("tallies", {}).items()}))
    return {"units": len(paths), **summary(total)}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def table_rows(by_source: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per source (of :func:`summary` values): the ``pdf-stats`` table."""
    rows = []
    for name, s in by_source.items():
        pages = s.get("pages", {})
        rows.append({"source": name, "files": pages.get("files", 0), "text_layer": pages.get("text_layer", 0),
                     "ocr": pages.get("ocr", 0), "dropped": sum(s.get("drops", {}).values()),
                     "ocr_reasons": _counts(s.get("ocr_reasons", {})), "drops": _counts(s.get("drops", {})),
                     "languages": _counts(s.get("languages", {})), "render_ms_per_page": s.get("render_ms_per_page")})
    return rows


def lines(name: str, s: dict[str, Any]) -> list[str]:
    """A source's stats in words, for a terminal."""
    pages = s.get("pages", {})
    rendered = f"{s['render_ms_per_page']:g} ms a page" if s.get("render_ms_per_page") is not None else "no page"
    out = [f"{name}: {pages.get('files', 0)} PDF files; {pages.get('text_layer', 0)} pages from their text layer, "
           f"{pages.get('ocr', 0)} to OCR; rendering {s.get('render_s', 0):g} s ({rendered})"]
    if "urls" in pages:
        out.append(f"  URLs: {pages['urls']}, fetched {pages.get('fetched', 0)} "
                   f"(recovered by retry {pages.get('recovered_by_retry', 0)})")
    out += [f"  to OCR because: {_counts(s.get('ocr_reasons', {}))}",
            f"  languages (text-layer pages): {_counts(s.get('languages', {}))}",
            f"  dropped: {_counts(s.get('drops', {}))}"]
    return out
