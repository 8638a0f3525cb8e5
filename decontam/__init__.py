"""The decontamination stage: near-duplicate images across the mixture, and evaluation sets kept out.

Runs between the task stage and the mix on the one stage contract (:mod:`pipelines.stage`): it
hashes every image of every task table (pHash) and every evaluation set's images and n-grams,
finds the near-duplicates through a band index (no all-pairs comparison, no process holding every
hash), and writes per task table the samples to remove, with reason and evidence
(:mod:`pipelines.layout.removals`), plus ``<root>/decontam/contamination.parquet`` for audit. The
mixer leaves those samples out and counts them per source. See ``decontam/README.md``.

>>> from decontam import DecontamSettings, run_decontam  # doctest: +SKIP
"""

from decontam.settings import DecontamSettings, EvaluationSet, NearDuplicates
from pipelines._imports import lazy_exports

_LAZY = {"run_decontam": "decontam.run"}
__getattr__ = lazy_exports(__name__, _LAZY, extra="decontam")
__all__ = ["DecontamSettings", "EvaluationSet", "NearDuplicates", *_LAZY]
