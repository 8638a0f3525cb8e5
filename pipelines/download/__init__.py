"""The download stage: URL lists through img2dataset on Ray, with filters, guards and a retry pass."""

import os

# albumentations, imported by img2dataset, asks PyPI for a newer version unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pipelines._imports import require

require("img2dataset", "download")  # a missing extra fails here with the pip hint, not deep inside

from pipelines.download.guards import classify_error
from pipelines.download.stage import (
    ORIGIN_KEY,
    DownloadStats,
    download_all,
    download_source,
    run_download_stage,
    sample_id,
)

__all__ = ["ORIGIN_KEY", "DownloadStats", "classify_error", "download_all", "download_source", "run_download_stage", "sample_id"]
