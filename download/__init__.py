"""The download stage: URL lists through img2dataset on Ray, with filters, guards and a retry pass.

Its settings (:mod:`download.settings`) import nothing heavy; the stage itself is loaded
on first use, and a missing ``download`` extra fails there with the pip hint, not deep inside.
"""

import os

# albumentations, imported by img2dataset, asks PyPI for a newer version unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_STAGE_NAMES = ("ORIGIN_KEY", "DownloadStats", "download_source", "download_sources", "sample_id")

__all__ = ["classify_error", *_STAGE_NAMES]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'download' has no attribute {name!r}")
    from pipelines._imports import require

    require("img2dataset", "download")
    from download import guards, stage

    return getattr(guards if name == "classify_error" else stage, name)
