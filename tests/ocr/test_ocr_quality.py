"""Measured quality: CER and line recall of each engine on held-out rendered text (en and zh).

The floors are what the engines reach here with margin (measured numbers are in ocr/README.md);
a model or pre-processing change that reads worse fails them.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import REPO
from ocr_synth import heldout_set, score_page

from ocr.engines.models import export_paddle_model_dirs
from ocr.reading_order import reading_order
from ocr.records import OcrResult

# (language, condition) -> (max CER, min line recall)
FLOORS = {
    ("en", "clean"): (0.05, 0.95),
    ("zh", "clean"): (0.10, 0.95),
    ("en", "hard"): (0.10, 0.85),
    ("zh", "hard"): (0.15, 0.80),
}
SETS = {case: heldout_set(*case, pages=4) for case in FLOORS}


def measure(pages, results) -> tuple[float, float]:
    dist = ref = recalled = total = 0
    for page, result in zip(pages, results, strict=True):
        d, r, k = score_page(page.lines, [ln.text for ln in reading_order(result.lines)])
        dist, ref, recalled, total = dist + d, ref + r, recalled + k, total + len(page.lines)
    return dist / ref, recalled / total


@pytest.mark.parametrize("case", list(FLOORS), ids=lambda c: "-".join(c))
def test_onnx_engine_quality(default_engine, case):
    pages = SETS[case]
    results = [default_engine.read_one(np.asarray(p.image.convert("RGB"))) for p in pages]
    cer, recall = measure(pages, results)
    print(f"onnx {default_engine.info.rec_model} {case}: CER={cer:.3f} line recall={recall:.3f}")
    max_cer, min_recall = FLOORS[case]
    assert cer <= max_cer and recall >= min_recall


@pytest.fixture(scope="module")
def paddle_results(paddle_python, tmp_path_factory, default_engine):
    """Every held-out page read by the real PaddleOCR pipeline in its own environment, in one process."""
    tmp = tmp_path_factory.mktemp("paddle")
    det_dir, rec_dir = export_paddle_model_dirs("PP-OCRv6_small", tmp / "models")
    paths = {}
    for case, pages in SETS.items():
        for i, page in enumerate(pages):
            path = tmp / f"{'-'.join(case)}-{i}.png"
            page.image.save(path)
            paths[(case, i)] = str(path)
    settings = {
        "engine": "paddleocr",
        "model": "PP-OCRv6_small",
        "det_model_dir": str(det_dir),
        "rec_model_dir": str(rec_dir),
    }
    out = subprocess.run(
        [str(paddle_python), "-m", "ocr.engines", "--settings", json.dumps(settings), *paths.values()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    by_path = {}
    for line in out.stdout.splitlines():
        row = json.loads(line)
        by_path[row["path"]] = OcrResult.from_json(row["result"])
    return {key: by_path[path] for key, path in paths.items()}


@pytest.mark.parametrize("case", list(FLOORS), ids=lambda c: "-".join(c))
def test_paddleocr_engine_quality(paddle_results, case):
    pages = SETS[case]
    results = [paddle_results[(case, i)] for i in range(len(pages))]
    cer, recall = measure(pages, results)
    print(f"paddleocr PP-OCRv6_small {case}: CER={cer:.3f} line recall={recall:.3f}")
    max_cer, min_recall = FLOORS[case]
    assert cer <= max_cer and recall >= min_recall


def test_engines_agree_on_record_shape(paddle_results, default_engine):
    case = ("en", "clean")
    page = SETS[case][0]
    ours = default_engine.read_one(np.asarray(page.image.convert("RGB")))
    theirs = paddle_results[(case, 0)]
    for result, engine in ((ours, "onnx"), (theirs, "paddleocr")):
        data = result.to_json()
        assert set(data) == {"width", "height", "lines", "info"}
        assert (data["width"], data["height"]) == page.image.size
        assert data["info"]["engine"] == engine
        assert (
            data["info"]["det_model"] == "PP-OCRv6_small_det"
            and data["info"]["rec_model"] == "PP-OCRv6_small_rec"
        )
        assert data["info"]["engine_version"]
        for line in data["lines"]:
            assert set(line) == {"text", "quad", "score"}
            assert len(line["quad"]) == 4 and all(len(p) == 2 for p in line["quad"])
            assert 0.0 <= line["score"] <= 1.0
    # Same models, same detector settings: the same lines in the same places.
    assert [ln.text for ln in reading_order(ours.lines)] == [ln.text for ln in reading_order(theirs.lines)]
    for a, b in zip(reading_order(ours.lines), reading_order(theirs.lines), strict=True):
        assert np.abs(np.subtract(a.bbox(), b.bbox())).max() <= 6
