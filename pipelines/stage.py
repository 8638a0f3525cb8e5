"""The stage contract and its executor: what every unit-based stage is, and the one loop that runs it.

A stage declares its resumable pieces and how one piece is done; the executor does the rest, the
same way for every stage: skip the units already complete, run the others on the cluster (in this
process when Ray is not up), retry transient failures, fail at once on deterministic ones (the
error gets a note naming the unit), merge the counters, and report progress (units done of total,
samples/s, ETA, drops) to the terminal and to Prefect's logs.

A stage comes in one of two shapes. A plain :class:`Stage` runs each unit as a Ray task:

.. code-block:: python

    class TaskTables(Stage):
        name = "tasks"

        def units(self, ctx):            # the resumable pieces: raw shards, annotation chunks, tars
            ...
        def done(self, unit, ctx):       # its completion marker exists (the unit's tables)
            ...
        def run_unit(self, unit, ctx):   # runs on a Ray worker; reads and writes only its own unit
            return Counters(samples=n, drops={"empty_caption": 3})

An :class:`ActorStage` holds a model: each actor of a pool builds it once (``setup``) and then does
one unit at a time with it, reading its unit's input and writing its output itself:

.. code-block:: python

    class OcrStage(ActorStage):
        name = "ocr"

        def pool(self, ctx):                    # actors, and the CPUs and GPUs each reserves
            return Pool(size=4, num_cpus=2, num_gpus=0.5)
        def setup(self, ctx):                   # once per actor: load the model
            return build_engine(self.settings)
        def run_unit(self, unit, ctx, engine):  # on the actor: read the shard, OCR it, write its file
            return Counters(samples=n, drops={"no_text": 7}, tallies={"nodes": {node: n}})

    report = execute(TaskTables(...), ctx)      # or execute(OcrStage(...), ctx): the same report
    report.units, report.skipped, report.counters.samples, report.counters.drops

Only counters come back to the driver, a few numbers per unit. A stage object and its context are
shipped to the workers, so both must pickle: settings models, storage URIs and options, never open
files or clients (a model is built on the actor, by ``setup``). Every stage's context extends
:class:`StageContext` (the storage root and its fsspec options; ``ctx.storage()`` opens it where the
unit runs) with that stage's settings, a frozen dataclass, so it pickles and no unit can change it.

Each stage package has one entry the application calls, ``run(ctx)`` in its ``entry.py``: ``ctx``
is the package's run context (a :class:`StageContext` with the stage's settings and the inputs it
reads, e.g. ``tasks.entry.TasksRun``), the answer the stage's JSON summary for the run's records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipelines.errors import describe, is_transient
from pipelines.progress import Progress
from pipelines.runtime import run_on_actors, run_tasks
from pipelines.storage import Storage


@dataclass(frozen=True)
class StageContext:
    """Where a stage's units read and write: the storage root (a path or fsspec URI that another
    process can open) and its fsspec options. A stage's own context extends it with its settings."""

    root: str
    options: dict = field(default_factory=dict)

    def storage(self) -> Storage:
        return Storage(self.root, self.options)


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
    # Further named counts a stage keeps, e.g. {"nodes": {ray node id: images}}; summed like drops.
    tallies: dict[str, Counter] = field(default_factory=dict)
    # Pieces a unit gave up on without failing the stage (a part whose server went away): name -> error,
    # and which of those failures were transient (a rerun, which redoes only them, may succeed).
    failed: dict[str, str] = field(default_factory=dict)
    transient: set[str] = field(default_factory=set)

    def fail(self, piece: str, error: BaseException) -> None:
        """Record that ``piece`` was given up on because of ``error``, and whether that was transient."""
        self.failed[piece] = describe(error)
        if is_transient(error):
            self.transient.add(piece)

    def add(self, other: Counters) -> None:
        self.samples += other.samples
        self.drops.update(other.drops)
        for name, counts in other.tallies.items():
            self.tallies.setdefault(name, Counter()).update(counts)
        self.failed.update(other.failed)
        self.transient.update(other.transient)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.samples, "drops": dict(sorted(self.drops.items()))}
        if self.tallies:
            out["tallies"] = {name: dict(sorted(c.items())) for name, c in sorted(self.tallies.items())}
        if self.failed:
            out["failed"] = dict(sorted(self.failed.items()))
        return out


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
    """The contract (see the module docstring). What is transient is one rule for every stage
    (:func:`pipelines.errors.is_transient`): a unit's own "try again" errors subclass ``TransientError``.

    ``label`` (a source name) and ``unit_kind`` (``shards``) only make the progress lines read better.
    ``max_in_flight`` caps the units running at once (None: as many as the cluster's CPUs allow),
    for stages whose limit is another system's (requests to a server fleet, connections to hosts).
    """

    name: ClassVar[str]
    num_cpus: ClassVar[float] = 1
    max_in_flight: int | None = None
    actors: ClassVar[bool] = False  # True: units run on a pool of actors that hold a model (ActorStage)
    unit_kind: ClassVar[str] = "units"
    label: str | None = None

    def units(self, ctx) -> Iterable[Unit]:
        raise NotImplementedError

    def done(self, unit: Unit, ctx) -> bool:
        raise NotImplementedError

    def run_unit(self, unit: Unit, ctx) -> Counters:
        raise NotImplementedError


@dataclass(frozen=True)
class Pool:
    """An actor stage's pool: how many actors, and the CPUs and GPUs Ray reserves for each."""

    size: int = 1
    num_cpus: float = 1
    num_gpus: float = 0

    def __post_init__(self) -> None:
        if self.size < 1 or self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"actor pool: size must be >= 1 and num_cpus, num_gpus >= 0, got {self}")


class ActorStage(Stage):
    """A stage whose units need a model: ``setup(ctx)`` builds it once per actor of ``pool(ctx)``, and
    ``run_unit(unit, ctx, model)`` does one unit with it. When Ray is not up, one model in this process."""

    actors: ClassVar[bool] = True

    def pool(self, ctx) -> Pool:
        return Pool(num_cpus=self.num_cpus)

    def setup(self, ctx) -> Any:
        raise NotImplementedError

    def run_unit(self, unit: Unit, ctx, model: Any = None) -> Counters:
        raise NotImplementedError


def _failed(stage: Stage, unit: Unit, err: BaseException) -> None:
    # A note, not a new exception: callers (and the flow's retry rule) still see the unit's own error.
    where = f" of {unit.group}" if unit.group else ""
    err.add_note(f"stage {stage.name!r}: unit {unit.name!r}{where} failed")


def _run(stage: Stage, ctx, unit: Unit) -> tuple[str, Counters]:
    try:
        return unit.group, stage.run_unit(unit, ctx)
    except Exception as err:
        _failed(stage, unit, err)
        raise


def _setup(stage: ActorStage, ctx) -> Any:
    try:
        return stage.setup(ctx)
    except Exception as err:
        err.add_note(f"stage {stage.name!r}: setup (building an actor's model) failed")
        raise


def _run_with(model: Any, stage: ActorStage, unit: Unit, ctx) -> tuple[str, Counters]:
    try:
        return unit.group, stage.run_unit(unit, ctx, model)
    except Exception as err:
        _failed(stage, unit, err)
        raise


def _results(stage: Stage, todo: list[Unit], ctx):
    if not stage.actors:
        return run_tasks(_run, [(unit,) for unit in todo], num_cpus=stage.num_cpus,
                         shared=(stage, ctx), max_in_flight=stage.max_in_flight)
    if not isinstance(stage, ActorStage):
        raise TypeError(f"stage {stage.name!r} sets actors = True but is not an ActorStage (no setup, pool)")
    pool = stage.pool(ctx)
    return run_on_actors(_setup, (stage, ctx), _run_with, [(stage, unit, ctx) for unit in todo],
                         size=pool.size, num_cpus=pool.num_cpus, num_gpus=pool.num_gpus,
                         name=" ".join(filter(None, [stage.name, stage.label])))


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
    progress = Progress(stage.name, total=len(todo), unit=stage.unit_kind, label=stage.label)
    for group, counters in _results(stage, todo, ctx):
        report.counters.add(counters)
        report.groups[group].add(counters)
        progress.advance(samples=counters.samples, drops=sum(counters.drops.values()))
    progress.done()
    return report
