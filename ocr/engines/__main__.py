"""Run one OCR engine over image files and print one JSON result per line.

    python -m ocr.engines --settings '{"engine": "paddleocr", ...}' a.jpg b.png

This is how the tests drive the PaddleOCR engine inside its own environment, and a quick way to
look at what an engine reads in an image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from PIL import Image

from ..settings import OcrSettings
from . import build_engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocr.engines", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="{}", help="OcrSettings as JSON")
    parser.add_argument("--repeat", type=int, default=1, help="read the images this many times (timing)")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    engine = build_engine(OcrSettings.model_validate_json(args.settings))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in args.images]
    start = time.perf_counter()
    for _ in range(args.repeat):
        results = [engine.read_one(img) for img in images]
    elapsed = time.perf_counter() - start
    for path, res in zip(args.images, results, strict=True):
        print(json.dumps({"path": path, "result": res.to_json()}, ensure_ascii=False))
    print(json.dumps({"images_per_s": len(images) * args.repeat / elapsed}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
