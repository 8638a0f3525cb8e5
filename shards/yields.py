"""Datasets that lost everything, or most, stop the mixture instead of letting the others take their share.

A task table records how many input records its builder read (``vlmix.inputs``) and why it dropped
the ones it did not keep (``vlmix.drops``); the mixer's index pass reads both for every table. A
dataset whose rows fall below ``min_kept_share`` of its inputs fails the mix, naming the dataset and
its top drop reasons; a dataset with no row fails whatever its floor but 0. A floor of 0 (set per
dataset, ``min_kept_shares``) allows it, with a warning. Records lost before the builder could read
them (``upstream_losses``: a URL list's rows that failed to download) count as inputs and drops too,
so a web source that fetched a tenth of its URLs fails like a local one that read a tenth of its files.

>>> check_kept_shares([{"dataset": "coco", "rows": 0, "inputs": 30, "drops": {"image_path_invalid": 30}}],
...                   0.5, {})  # doctest: +SKIP
LowYieldError: dataset 'coco' kept 0 of its 30 input records (0.0%) ...
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

log = logging.getLogger(__name__)

TOP_REASONS = 3


class LowYieldError(ValueError):
    """A dataset's task tables kept less of its input records than its floor allows."""


def check_kept_shares(index: Iterable[dict], floor: float, floors: dict[str, float],
                      upstream: dict[str, dict[str, int]] | None = None) -> list[str]:
    """Fail on datasets below their floor (``floors`` per dataset, else ``floor``); return the warnings
    for those allowed below it. ``index``: the index pass's per-table records (dataset, rows, inputs, drops);
    ``upstream``: dataset -> reason -> records lost before its builder read them."""
    rows: Counter = Counter()
    inputs: Counter = Counter()
    drops: dict[str, Counter] = {}
    for record in index:
        dataset = record["dataset"]
        rows[dataset] += record["rows"]
        inputs[dataset] += max(record.get("inputs", record["rows"]), record["rows"])
        drops.setdefault(dataset, Counter()).update(record["drops"])
    for dataset, lost in (upstream or {}).items():
        inputs[dataset] += sum(lost.values())
        drops.setdefault(dataset, Counter()).update(lost)
    problems, warnings = [], []
    for dataset in sorted(inputs):
        kept, read = rows[dataset], inputs[dataset]
        share = kept / read if read else 0.0
        minimum = floors.get(dataset, floor)
        if kept and share >= minimum:
            continue
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(drops[dataset].items(),
                                                                    key=lambda item: (-item[1], item[0]))[:TOP_REASONS])
        line = (f"dataset {dataset!r} kept {kept} of its {read} input records ({share:.1%}), "
                f"below its min_kept_share {minimum}; top drop reasons: {reasons or 'none recorded'}")
        if minimum == 0:
            warnings.append(line)
            log.warning("%s (allowed: its min_kept_share is 0)", line)
        else:
            problems.append(line)
    if problems:
        raise LowYieldError("\n".join(problems) + "\nFix the source's files or settings, or allow it: set the "
                            "source's min_kept_share (0 takes even an empty dataset)")
    return warnings
