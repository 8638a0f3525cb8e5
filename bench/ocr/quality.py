"""Quality and speed of each OCR engine/model on the held-out rendered set (tests/ocr/ocr_synth.py).

    .venv/bin/python bench/ocr/quality.py [--models PP-OCRv6_small PP-OCRv6_tiny] [--det-side 64 736]
    .venv/bin/python bench/ocr/quality.py --engine paddleocr --python .venv-paddleocr/bin/python

Prints CER and line recall per language and condition (clean / hard), and images/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "ocr")]

from ocr_synth import heldout_set, score_page  # noqa: E402

from ocr.reading_order import reading_order  # noqa: E402


def evaluate(read_pages, pages) -> dict:
    """read_pages(list of PIL images) -> list of list of OcrLine; returns CER, recall, images/s."""
    start = time.perf_counter()
    predicted = read_pages([p.image for p in pages])
    elapsed = time.perf_counter() - start
    dist = ref = recalled = total = 0
    for page, lines in zip(pages, predicted, strict=True):
        d, r, k = score_page(page.lines, [ln.text for ln in reading_order(lines)])
        dist, ref, recalled, total = dist + d, ref + r, recalled + k, total + len(page.lines)
    return {"cer": dist / ref, "line_recall": recalled / total, "images_per_s": len(pages) / elapsed}


def in_process(settings_json: str):
    from ocr.engines import build_engine
    from ocr.settings import OcrSettings

    engine = build_engine(OcrSettings.model_validate_json(settings_json))
    engine.read_one(np.full((64, 64, 3), 255, np.uint8))  # warm-up

    def read_pages(images):
        return [engine.read_one(np.asarray(img.convert("RGB"))).lines for img in images]

    return read_pages


def in_subprocess(python: str, settings_json: str):
    from ocr.records import OcrResult

    def read_pages(images):
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, img in enumerate(images):
                paths.append(f"{tmp}/{i}.png")
                img.save(paths[-1])
            out = subprocess.run(
                [python, "-m", "ocr.engines", "--settings", settings_json, *paths],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        return [OcrResult.from_json(r["result"]).lines for r in rows]

    return read_pages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--python", help="run the engine with this interpreter (PaddleOCR's environment)")
    parser.add_argument("--models", nargs="+", default=["PP-OCRv6_small", "PP-OCRv6_tiny", "PP-OCRv5_mobile"])
    parser.add_argument("--det-side", nargs="+", type=int, default=[64])
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--extra", default="{}", help="more OcrSettings fields as JSON")
    parser.add_argument(
        "--model-root", help="paddleocr: folder of exported model dirs (<model>_det, <model>_rec)"
    )
    args = parser.parse_args()
    for model in args.models:
        for side in args.det_side:
            settings = {
                "engine": args.engine,
                "model": model,
                "det_limit_side_len": side,
                **json.loads(args.extra),
            }
            if args.model_root:
                settings |= {
                    "det_model_dir": f"{args.model_root}/{model}_det",
                    "rec_model_dir": f"{args.model_root}/{model}_rec",
                }
            sj = json.dumps(settings)
            reader = in_subprocess(args.python, sj) if args.python else in_process(sj)
            for language in ("en", "zh"):
                for condition in ("clean", "hard"):
                    res = evaluate(reader, heldout_set(language, condition, pages=args.pages))
                    print(
                        f"{args.engine:9s} {model:16s} side={side:4d} {language} {condition:5s} "
                        f"CER={res['cer']:.3f} recall={res['line_recall']:.3f} {res['images_per_s']:.2f} img/s",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
