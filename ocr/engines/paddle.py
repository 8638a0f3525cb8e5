"""PaddleOCR 3.x, the report's OCR tool, behind the common engine interface.

PaddleOCR pins numpy < 2.4, PyYAML 6.0.2 and opencv-contrib-python, which clash with vlmix's
core pins, so it lives in an environment of its own (see ocr/README.md): on a GPU cluster, the
image the OCR actors run in; here, ``.venv-paddleocr``. Offline it needs local model directories;
with ``paddle_backend="onnxruntime"`` it runs the same ONNX files as the ``onnx`` engine and
needs no paddlepaddle.
"""

from __future__ import annotations

import os
from importlib import metadata

import numpy as np

from pipelines._imports import MissingDependency

from ..records import EngineInfo
from .base import OcrEngine
from .models import MODELS


class PaddleOcrEngine(OcrEngine):
    """The ``paddleocr`` engine. ``settings`` is an :class:`ocr.settings.OcrSettings`."""

    def __init__(self, settings) -> None:
        super().__init__(settings.max_image_side)
        if settings.det_model_dir and settings.rec_model_dir:
            # With local model directories there is nothing to fetch; skip the hub reachability probe.
            os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        try:
            from paddleocr import PaddleOCR
        except ImportError as err:
            raise MissingDependency(
                f"the 'paddleocr' OCR engine needs PaddleOCR ({err}); it cannot share vlmix's environment, "
                "see ocr/README.md ('PaddleOCR environment') for the pinned install"
            ) from err
        spec = MODELS[settings.model]
        kwargs = dict(
            text_detection_model_name=spec.det_name,
            text_detection_model_dir=settings.det_model_dir,
            text_recognition_model_name=spec.rec_name,
            text_recognition_model_dir=settings.rec_model_dir,
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=False,
            text_det_limit_side_len=settings.det_limit_side_len,
            text_det_limit_type="min",
            text_det_thresh=settings.det_thresh,
            text_det_box_thresh=settings.det_box_thresh,
            text_det_unclip_ratio=settings.det_unclip_ratio,
            text_recognition_batch_size=settings.rec_batch_size,
            text_rec_score_thresh=0.0,  # the stage's filters decide, and count, what is dropped
            engine=settings.paddle_backend,
            device=settings.device,
        )
        if settings.paddle_backend == "onnxruntime" and settings.threads_per_actor:
            kwargs["engine_config"] = {
                "intra_op_num_threads": settings.threads_per_actor,
                "inter_op_num_threads": 1,
            }
        if settings.paddle_backend != "onnxruntime":
            # Paddle's oneDNN path misreads some PP-OCR models on CPU (seen with PP-OCRv4 files).
            kwargs["enable_mkldnn"] = False
        self._ocr = PaddleOCR(**kwargs)
        self.info = EngineInfo(
            engine="paddleocr",
            engine_version=f"paddleocr {metadata.version('paddleocr')}",
            det_model=spec.det_name,
            rec_model=spec.rec_name,
            runtime=settings.paddle_backend,
        )

    def _read_batch(self, images: list[np.ndarray]) -> list[list[tuple[object, str, float]]]:
        results = self._ocr.predict([np.ascontiguousarray(img[:, :, ::-1]) for img in images])  # BGR in
        out = []
        for res in results:
            out.append(list(zip(res["rec_polys"], res["rec_texts"], res["rec_scores"], strict=True)))
        return out
