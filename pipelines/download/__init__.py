"""The download stage: URL lists through img2dataset on Ray, with filters, guards and a retry pass."""

import os

# albumentations, imported by img2dataset, asks PyPI for a newer version unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pipelines.download.guards import classify_error
from pipelines.download.stage import DownloadStats, download_all, download_source

__all__ = ["DownloadStats", "classify_error", "download_all", "download_source"]
