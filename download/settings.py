"""Settings of the download stage, owned here and composed into the mixture config (``download:``).

This module imports nothing heavy, so a config loads and validates without the download extra.
"""

from __future__ import annotations

from pydantic import Field

from pipelines._model import EXECUTION_ONLY, ConfigModel

URL_BUDGET_FACTOR = 3  # one URL's wall-clock budget in units of timeout_s, unless max_seconds_per_url


class Download(ConfigModel):
    """Settings of the download stage (img2dataset on Ray)."""

    max_image_side: int = Field(4096, ge=32, description="pixels; larger images are shrunk, never enlarged")
    timeout_s: float = Field(
        10.0, gt=0, description="seconds one socket operation of a download may wait (connect, a read)"
    )
    max_seconds_per_url: float | None = Field(
        None, gt=0,
        description="wall-clock bound on one URL, whatever the server does: waiting for a slot to its host,"
        " connecting, redirects, headers and body together (a URL past it fails as too_slow, retried"
        " once at most); None = 3 x timeout_s",
    )
    max_body_bytes: int = Field(32 * 2**20, ge=1024, description="bytes; larger bodies are refused")
    max_pixels: int = Field(
        89_478_485, ge=1, description="width*height above which an image is a decompression bomb"
    )
    samples_per_shard: int = Field(10_000, ge=1, description="URLs per img2dataset shard")
    threads_per_worker: int = Field(64, ge=1, description="download threads inside one shard task",
                                    json_schema_extra=EXECUTION_ONLY)
    cpus_per_worker: float = Field(1.0, gt=0, description="Ray CPUs reserved by one shard task",
                                   json_schema_extra=EXECUTION_ONLY)
    max_workers: int | None = Field(None, ge=1, description="shard tasks in flight; None = all CPUs",
                                    json_schema_extra=EXECUTION_ONLY)
    retry_rounds: int = Field(1, ge=0, description="passes over retryable failures (timeouts, 5xx, resets)")
    max_connections_per_host: int = Field(
        16, ge=1,
        description="downloads in flight to one host (host:port) within one shard task; the others wait"
        " for a slot, within their max_seconds_per_url",
    )
    max_redirects: int = Field(5, ge=0, description="redirect hops one URL may take; more is too_many_redirects")
    max_retry_after_s: float = Field(
        60.0, ge=0,
        description="longest Retry-After (on a 429 or 503) the retry pass waits for before asking again;"
        " a URL asking for longer is not retried",
    )
    user_agent_token: str = "vlmix"
    respect_noai_headers: bool = Field(True, description="honour X-Robots-Tag noai/noindex directives")

    @property
    def url_budget_s(self) -> float:
        """Seconds one URL may take in all: ``max_seconds_per_url``, else ``URL_BUDGET_FACTOR * timeout_s``."""
        return self.max_seconds_per_url or URL_BUDGET_FACTOR * self.timeout_s
