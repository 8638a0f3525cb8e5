"""Settings of the download stage, owned here and composed into the mixture config (``download:``).

This module imports nothing heavy, so a config loads and validates without the download extra.
"""

from __future__ import annotations

from pydantic import Field

from pipelines._model import ConfigModel


class Download(ConfigModel):
    """Settings of the download stage (img2dataset on Ray)."""

    max_image_side: int = Field(4096, ge=32, description="pixels; larger images are shrunk, never enlarged")
    timeout_s: float = Field(10.0, gt=0, description="seconds per socket operation of one download")
    max_body_bytes: int = Field(32 * 2**20, ge=1024, description="bytes; larger bodies are refused")
    max_pixels: int = Field(
        89_478_485, ge=1, description="width*height above which an image is a decompression bomb"
    )
    samples_per_shard: int = Field(10_000, ge=1, description="URLs per img2dataset shard")
    threads_per_worker: int = Field(64, ge=1, description="download threads inside one shard task")
    cpus_per_worker: float = Field(1.0, gt=0, description="Ray CPUs reserved by one shard task")
    max_workers: int | None = Field(None, ge=1, description="shard tasks in flight; None = all CPUs")
    retry_rounds: int = Field(1, ge=0, description="passes over retryable failures (timeouts, 5xx, resets)")
    user_agent_token: str = "vlmix"
    respect_noai_headers: bool = Field(True, description="honour X-Robots-Tag noai/noindex directives")
