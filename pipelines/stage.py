"""The stage contract and its executor: what every unit-based stage is, and the one loop that runs it.

A stage declares its resumable pieces and how one piece is done; the executor does the rest, the
same way for every stage: skip the units already complete, run the others as Ray tasks on the
cluster (in this process when Ray is not up), retry transient failures, fail at once on
deterministic ones, merge the counters, and report progress (units done of total, samples/s, ETA,
drops) to the terminal and to Prefect's logs.

.. code-block:: python

    class TaskTables(Stage):
        name = "tasks"

        def units(self, ctx):            # the resumable pieces: raw shards, annotation chunks, tars
            ...
        def done(self, unit, ctx):       # its completion marker exists (the unit's tables)
            ...
        def run_unit(self, unit, ctx):   # runs on a Ray worker; reads and writes only its own unit
            return Counters(samples=n, drops={"empty_caption": 3})

    report = execute(TaskTables(...), ctx)
    report.units, report.skipped, report.counters.samples, report.counters.drops

A stage object and its context are shipped to the workers, so both must pickle: settings models,
storage URIs and options, never open files or clients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipelines.progress import Progress
from pipelines.runtime import run_tasks


@dataclass(frozen=True)
class Unit:
    """One resumable piece of a stage: ``name`` names its output, ``spec`` says what to read."""

    name: str
    spec: tuple = ()
    group: str = ""  # what the unit belongs to (a source), for progress lines and per-group counters


@dataclass
class Counters:
    """What one unit (or a whole stage) produced: samples written and drops by reason."""

    samples: int = 0
    drops: Counter = field(default_factory=Counter)

    def add(self, other: Counters) -> None:
        self.samples += other.samples
        self.drops.update(other.drops)

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "drops": dict(sorted(self.drops.items()))}


@dataclass
class StageReport:
    stage: str
    units: int = 0
    skipped: int = 0
    counters: Counters = field(default_factory=Counters)
    groups: dict[str, Counters] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"units": self.units, "skipped": self.skipped, **self.counters.to_json(),
                "groups": {name: c.to_json() for name, c in sorted(self.groups.items())}}


class Stage:
    """The contract (see the module docstring). ``retry_on``: the exception types that are transient."""

    name: ClassVar[str]
    num_cpus: ClassVar[float] = 1
    # Network trouble, a store that timed out: transient. A missing or unreadable file is not.
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (ConnectionError, TimeoutError)

    def units(self, ctx) -> Iterable[Unit]:
        raise NotImplementedError

    def done(self, unit: Unit, ctx) -> bool:
        raise NotImplementedError

    def run_unit(self, unit: Unit, ctx) -> Counters:
        raise NotImplementedError


def _run(stage: Stage, unit: Unit, ctx) -> tuple[str, Counters]:
    return unit.group, stage.run_unit(unit, ctx)


def execute(stage: Stage, ctx) -> StageReport:
    """Run every unit of ``stage`` that is not done; the driver holds a few numbers per unit."""
    report = StageReport(stage.name)
    todo = []
    for unit in stage.units(ctx):
        report.units += 1
        report.groups.setdefault(unit.group, Counters())
        if stage.done(unit, ctx):
            report.skipped += 1
        else:
            todo.append(unit)
    progress = Progress(stage.name, total=len(todo), unit="units")
    for group, counters in run_tasks(_run, [(stage, unit, ctx) for unit in todo], num_cpus=stage.num_cpus,
                                     retry_on=stage.retry_on):
        report.counters.add(counters)
        report.groups[group].add(counters)
        progress.advance(samples=counters.samples, drops=sum(counters.drops.values()))
    progress.done()
    return report
