"""Pages/s of the PDF stage against pdfium's renderer plus text extraction in a plain loop, same files.

Both sides use as many worker processes as cores and do the same page work: render at the stage's
scale, encode a JPEG, read every character with its box. The stage adds what makes it safe and
useful: the sandboxed rendering process with its limits, the ink measure, lines and reading order,
the per-page decision, the samples and their raw shard and task table. The stage's units run in a
process pool calling ``PdfStage.run_unit`` (what a Ray task runs; Ray's own scheduling not included).

    .venv/bin/python bench/pdf/run.py --files 24 --pages 4      # prints one JSON line

The rendering process is kept per worker across units, as in a Ray worker: both pools are warmed up.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pdf import generate
from pdf.settings import PdfSettings

PROMPTS = {"transcribe": {"en": ["Read the page."], "zh": ["读出页面文字。"]},
           "grounded": {"en": ["Where is the text?"], "zh": ["文字在哪里？"]}}


def make_files(folder: Path, files: int, pages: int, seed: int) -> int:
    """Mixed PDFs: English, Chinese, two columns, scans, a lying text layer. Returns the page count."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        kind = i % 5
        if kind == 0:
            data, _ = generate.text_pages([rng.sample(generate.ENGLISH, 4) * 6 for _ in range(pages)])
        elif kind == 1:
            data, _ = generate.text_pages([rng.sample(generate.CHINESE, 4) * 6 for _ in range(pages)], font="cjk")
        elif kind == 2:
            data, _ = generate.two_columns()
        elif kind == 3:
            data = generate.scanned()
        else:
            data, _ = generate.lying_text_layer()
        (folder / f"{i:04d}.pdf").write_bytes(data)
    for path in sorted(folder.glob("*.pdf")):
        import pypdfium2

        with pypdfium2.PdfDocument(str(path)) as document:
            total += len(document)
    return total


def plain_file(path: str, dpi: float, max_side: int) -> int:
    """The plain loop's work for one file: render, JPEG, every character's box."""
    import pypdfium2

    from pdf.page import render_scale

    document = pypdfium2.PdfDocument(path)
    for page in document:
        width, height = page.get_size()
        image = page.render(scale=render_scale(width, height, dpi, max_side)).to_pil().convert("RGB")
        image.save(io.BytesIO(), format="JPEG", quality=90)
        text = page.get_textpage()
        text.get_text_range()
        for i in range(text.count_chars()):
            text.get_charbox(i, loose=True)
        text.close()
        page.close()
    n = len(document)
    document.close()
    return n


def stage_unit(args) -> dict:
    from pdf.stage import PdfStage

    stage, unit, ctx = args
    counters = PdfStage.run_unit(stage, unit, ctx)
    return {"samples": counters.samples, "ocr": counters.tallies["ocr_reasons"].total()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--pages", type=int, default=4, help="pages of each text PDF")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pdf.stage import PdfContext, PdfStage
    from pipelines.source import Source

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pdfs"
        folder.mkdir()
        pages = make_files(folder, args.files, args.pages, args.seed)
        settings = PdfSettings(scripts={"en": ["Latin"], "zh": ["Han"]}, prompts=PROMPTS,
                               files_per_unit=max(1, args.files // (2 * args.workers)))
        from pipelines.stage import Unit
        paths = [str(p) for p in sorted(folder.glob("*.pdf"))]
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(plain_file, paths[:2], [settings.dpi] * 2, [settings.max_side] * 2))  # warm up
            started = time.perf_counter()
            plain_pages = sum(pool.map(plain_file, paths, [settings.dpi] * len(paths),
                                       [settings.max_side] * len(paths)))
            plain_s = time.perf_counter() - started

            source = Source(name="bench_pdf", kind="pdf", task="ocr_large", language="auto",
                            locations=[str(folder / "*.pdf")], ocr={"language": "zh"})
            stage, ctx = PdfStage(source), PdfContext(str(Path(tmp) / "root"), {}, settings)
            units = list(stage.units(ctx))
            # Warm up: each worker starts its rendering process once (it is kept across units).
            warm = PdfContext(str(Path(tmp) / "warm"), {}, settings)
            list(pool.map(stage_unit, [(stage, Unit(f"{i:05d}", ("files", paths[0])), warm) for i in range(2 * args.workers)]))
            started = time.perf_counter()
            results = list(pool.map(stage_unit, [(stage, unit, ctx) for unit in units]))
            stage_s = time.perf_counter() - started
    assert plain_pages == pages
    ocr = sum(r["ocr"] for r in results)
    print(json.dumps({
        "files": args.files, "pages": pages, "workers": args.workers, "units": len(units),
        "plain_pages_per_s": round(pages / plain_s, 2), "stage_pages_per_s": round(pages / stage_s, 2),
        "ratio": round(plain_s / stage_s, 3), "share_to_ocr": round(ocr / pages, 3),
        "text_layer_samples": sum(r["samples"] for r in results),
    }))


if __name__ == "__main__":
    main()
