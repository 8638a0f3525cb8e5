"""The mixer's settings and counting rules: which task samples, how many times each, make a mixture.

Inputs (:class:`MixSettings`): target shares per task, a weight per dataset within its task, the
total number of samples, a seed. The mixture (:func:`shards.plan.plan_mixture`) is drawn so:

1. **Exact duplicates out**: rows with the same image sha256 (by default also the same task and
   language, so a translated variant or a caption and an OCR sample of one image both stay) are
   kept once: the first in (dataset, id) order. Removals are counted per dataset.
2. **Counts**: ``total * share`` per task, split among the task's datasets by weight (largest
   remainder rounding, :func:`largest_remainder`, so counts add up exactly). Or, with
   ``repeat_time`` (InternVL's meta-file weighting), each dataset gives ``floor(repeat_time *
   its unique samples)`` (unlisted datasets: 1): a fraction down-samples, above 1 repeats, and the
   total is what that adds up to (:func:`repeat_counts`).
3. **Selection** per (task, dataset): without replacement while the dataset suffices; past that,
   every row is taken ``k`` times plus a random remainder, and each repeat is recorded
   (``repeat_time``, as the InternVL trainer's meta file calls it, and a per-sample repeat
   number). The remainder is a uniform draw over the whole dataset: how many of it each task
   table gives is one multivariate hypergeometric draw, and each table draws its own share.
4. **Order**: one seeded permutation of all picks (:mod:`shards.permute`), so each shard
   interleaves every source.

Everything is deterministic given the task tables and the settings, and nothing is held per
sample in one process: see :mod:`shards.plan` for how the work is spread.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines._model import ConfigModel

REPORT_TASK_SHARES = {"captioning": 0.539, "detection": 0.052, "ocr_large": 0.320, "ocr_small": 0.089}


class MixError(ValueError):
    """The mixture cannot be built as asked (a task without data, a weight for no dataset, ...)."""


class MixOptions(ConfigModel):
    """What a mixture config sets of the mixer (its ``mixture`` section); :class:`MixSettings` adds what
    the application derives from the rest of the config (task shares, weights, seed)."""

    total_samples: int | None = Field(
        None, ge=1, description="samples in the mixture, repeats included; required with shares, "
        "None with repeat_time (the total is what the repeat times give)"
    )
    weight_by_size: bool = Field(
        False, description="multiply each weight by the dataset's unique sample count (natural proportions)"
    )
    repeat_time: dict[str, float] | None = Field(
        None,
        description="dataset -> InternVL repeat_time (0.25 keeps a quarter of its unique samples, 3 takes each "
        "three times; unlisted datasets: 1; one with no samples weighs nothing). Given: counts come from these, "
        "`shares` only names the tasks of the mixture and `weights` must be empty",
    )
    min_kept_share: float = Field(
        0.5, ge=0, le=1, description="a dataset whose task tables kept less than this share of the records "
        "their builder read fails the mix, naming its top drop reasons (one with no sample fails unless its floor is 0)",
    )
    dedup: Literal["image_task_language", "image", "off"] = Field(
        "image_task_language",
        description="what makes two rows exact duplicates: the same image bytes and ...",
    )

    @field_validator("repeat_time")
    @classmethod
    def _repeat_time(cls, repeat_time: dict[str, float] | None) -> dict[str, float] | None:
        for dataset, value in (repeat_time or {}).items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"repeat_time of {dataset!r} must be a finite number >= 0, got {value}")
        return repeat_time


class MixSettings(MixOptions):
    """What mixture to draw."""

    shares: dict[str, float] = Field(
        default_factory=lambda: dict(REPORT_TASK_SHARES),
        description="task -> target fraction of all samples; must add up to 1 (within 0.001)",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="dataset -> relative weight among the datasets of its task; unlisted datasets weigh 1",
    )
    seed: int = Field(0, description="fixes the selection and the order")
    min_kept_shares: dict[str, float] = Field(
        default_factory=dict, description="dataset -> its own min_kept_share; 0 allows it, even empty, with a warning"
    )
    upstream_losses: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="dataset -> reason -> input records lost before its task builder read them (URLs that failed "
        "to download): counted as inputs and drops by the min_kept_share check",
    )
    datasets: list[str] | None = Field(None, description="task-table datasets to draw from; None = all")
    decontaminated: bool = Field(
        True, description="leave out the samples the decontamination stage listed (<root>/decontam, pipelines.layout.removals); False: its lists are ignored (the config has no decontaminate section)")

    @field_validator("shares")
    @classmethod
    def _shares(cls, shares: dict[str, float]) -> dict[str, float]:
        for task, share in shares.items():
            if not math.isfinite(share) or share <= 0:
                raise ValueError(f"share of {task!r} must be a finite number above 0, got {share}")
        if not shares:
            raise ValueError("at least one task is needed")
        return shares

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        for dataset, weight in weights.items():
            if not math.isfinite(weight) or weight <= 0:
                raise ValueError(f"weight of {dataset!r} must be a finite number above 0, got {weight}")
        return weights

    @model_validator(mode="after")
    def _weights_in_datasets(self) -> MixSettings:
        if self.repeat_time is None:
            total = sum(self.shares.values())
            if abs(total - 1.0) > 1e-3:
                raise ValueError(f"task shares must add up to 1, they add up to {total:.4f}")
            if self.total_samples is None:
                raise ValueError("total_samples is required when the mixture is drawn by task shares")
        else:
            if self.weights or self.weight_by_size:
                raise ValueError("weights and weight_by_size do not apply with repeat_time: give each dataset "
                                 "its repeat_time instead")
            if self.total_samples is not None:
                raise ValueError("total_samples follows from repeat_time: leave it out")
        if self.datasets is not None:
            unknown = sorted((set(self.weights) | set(self.repeat_time or {})) - set(self.datasets))
            if unknown:
                raise ValueError(f"weights or repeat times given for datasets not in `datasets`: {unknown}")
        return self

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()



def repeat_counts(available: dict[str, int], repeat_time: dict[str, float]) -> dict[str, int]:
    """Samples per dataset under InternVL's ``repeat_time``: ``floor(repeat_time * available)``
    (InternVL's loader keeps ``int(len * repeat_time)`` of a down-sampled dataset); unlisted: 1."""
    return {name: math.floor(repeat_time.get(name, 1.0) * n + 1e-9) for name, n in available.items()}


def largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer counts proportional to ``weights`` that add up to exactly ``total``."""
    norm = sum(weights.values())
    exact = {name: total * weight / norm for name, weight in weights.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts
