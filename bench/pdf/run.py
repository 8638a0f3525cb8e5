"""Pages/s of the PDF stage against pdfium's renderer plus text extraction in a plain loop, same files.

Both sides use as many worker processes as cores and do the same page work: render at the stage's
scale, encode a JPEG, read every character with its box. The stage adds what makes it safe and
useful: the sandboxed rendering process with its limits, the ink measure, lines and reading order,
the per-page decision, the samples and their raw shard and task table. The stage's units run in a
process pool calling ``PdfStage.run_unit`` (what a Ray task runs; Ray's own scheduling not included).

    .venv/bin/python bench/pdf/run.py --files 24 --pages 4      # prints one JSON line

The rendering process is kept per worker across units, as in a Ray worker: every worker starts its own
before the clock starts, and both sides are warmed up.
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


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) this process has used, or process ``pid`` (Linux: /proc)."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_file(path: str, dpi: float, max_side: int) -> tuple[int, float]:
    """The plain loop's work for one file: render, JPEG, every character's box. (pages, CPU seconds)."""
    import pypdfium2

    from pdf.page import render_scale

    cpu = _cpu_s()
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
    return n, _cpu_s() - cpu


def warm_worker(settings: PdfSettings, sample: bytes) -> None:
    """Start this worker's rendering process and render a page with it (a Ray worker keeps it too)."""
    from pdf.stage import _renderer

    renderer = _renderer(settings)
    renderer.open(sample, 1)
    renderer.next_page()


def stage_unit(args) -> dict:
    """One unit as a Ray task runs it; its CPU seconds, the worker's and its rendering process's."""
    from pdf.stage import PdfStage, _renderer

    stage, unit, ctx = args
    child = _renderer(ctx.settings)._process.pid
    cpu = _cpu_s() + _cpu_s(child)
    counters = PdfStage.run_unit(stage, unit, ctx)
    return {"samples": counters.samples, "ocr": counters.tallies["ocr_reasons"].total(),
            "cpu_s": _cpu_s() + _cpu_s(child) - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--pages", type=int, default=4, help="pages of each text PDF")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=3, help="plain and stage runs, taking turns")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pdf.stage import PdfContext, PdfStage
    from pipelines.source import Source
    from pipelines.stage import Unit

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pdfs"
        folder.mkdir()
        pages = make_files(folder, args.files, args.pages, args.seed)
        settings = PdfSettings(scripts={"en": ["Latin"], "zh": ["Han"]}, prompts=PROMPTS,
                               files_per_unit=max(1, args.files // (2 * args.workers)))
        paths = [str(p) for p in sorted(folder.glob("*.pdf"))]
        source = Source(name="bench_pdf", kind="pdf", task="ocr_large", language="auto",
                        locations=[str(folder / "*.pdf")], ocr={"language": "zh"})
        stage = PdfStage(source)
        units = list(stage.units(PdfContext(str(Path(tmp) / "root"), {}, settings)))
        sample = generate.text_pages([generate.ENGLISH])[0]
        plain_s, stage_s, plain_cpu, stage_cpu, rounds = 0.0, 0.0, 0.0, 0.0, []
        with ProcessPoolExecutor(args.workers, initializer=warm_worker, initargs=(settings, sample)) as pool:
            # Warm up: every worker started its rendering process (warm_worker), kept across units; both
            # sides then run once untimed (imports, caches).
            list(pool.map(plain_file, paths[:2], [settings.dpi] * 2, [settings.max_side] * 2))
            warm = PdfContext(str(Path(tmp) / "warm"), {}, settings)
            list(pool.map(stage_unit, [(stage, Unit(f"{i:05d}", ("files", paths[0])), warm)
                                       for i in range(2 * args.workers)]))
            for number in range(args.rounds):  # taking turns, so a shared machine's load falls on both
                started = time.perf_counter()
                plain = list(pool.map(plain_file, paths, [settings.dpi] * len(paths), [settings.max_side] * len(paths)))
                plain_round = time.perf_counter() - started
                ctx = PdfContext(str(Path(tmp) / f"root{number}"), {}, settings)
                started = time.perf_counter()
                results = list(pool.map(stage_unit, [(stage, unit, ctx) for unit in units]))
                stage_round = time.perf_counter() - started
                assert sum(n for n, _ in plain) == pages
                plain_s, stage_s = plain_s + plain_round, stage_s + stage_round
                plain_cpu += sum(cpu for _, cpu in plain)
                stage_cpu += sum(r["cpu_s"] for r in results)
                rounds.append(round(plain_round / stage_round, 3))
    ocr = sum(r["ocr"] for r in results)
    done = pages * args.rounds
    print(json.dumps({
        "files": args.files, "pages": pages, "workers": args.workers, "units": len(units), "rounds": args.rounds,
        "plain_pages_per_s": round(done / plain_s, 2), "stage_pages_per_s": round(done / stage_s, 2),
        "ratio": round(plain_s / stage_s, 3), "ratio_per_round": rounds,
        "plain_cpu_ms_per_page": round(1000 * plain_cpu / done, 1),
        "stage_cpu_ms_per_page": round(1000 * stage_cpu / done, 1),
        "share_to_ocr": round(ocr / pages, 3), "text_layer_samples": sum(r["samples"] for r in results),
    }))


if __name__ == "__main__":
    main()
