"""The decontamination stage's one entry: :func:`run` over a :class:`DecontamRun`, as the flow's
registry calls it: near-duplicate images across every task table and contamination by the
evaluation sets, written as the per-table lists the mix leaves out (:func:`decontam.run.run_decontam`).

>>> run(DecontamRun("/data/mix", settings=DecontamSettings(...), order=("laion", "coyo")))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from decontam.settings import DecontamSettings
from pipelines.stage import StageContext


@dataclass(frozen=True)
class DecontamRun(StageContext):
    """What the stage runs on: the root, its settings, and the sources in the config's order (the
    keep rule's tie-break: the source listed first)."""

    settings: DecontamSettings = field(default_factory=DecontamSettings)
    order: tuple[str, ...] = ()


def run(ctx: DecontamRun) -> dict[str, Any]:
    """Find and list what the mix leaves out; the stage's summary (removals per dataset, the audit file)."""
    from decontam.run import run_decontam

    return run_decontam(ctx.storage(), ctx.settings, order=list(ctx.order))
