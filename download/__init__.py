"""The download stage: URL lists through img2dataset on Ray, with filters, guards and a retry pass.

Its settings (:mod:`download.settings`) import nothing heavy; the stage itself is loaded
on first use, and a missing ``download`` extra fails there with the pip hint, not deep inside.
"""

import os

# albumentations, imported by img2dataset, asks PyPI for a newer version unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pipelines._imports import lazy_exports

_LAZY = {"classify_error": "download.guards", **dict.fromkeys(
    ("ORIGIN_KEY", "DownloadStats", "download_source", "download_sources", "sample_id"), "download.stage")}
__getattr__ = lazy_exports(__name__, _LAZY, extra="download")
__all__ = sorted(_LAZY)
