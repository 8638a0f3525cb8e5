"""The executor's actor-pool shape (:class:`pipelines.stage.ActorStage`): a model built once per actor,
one unit at a time per actor, done units skipped, transient errors retried, deterministic ones
failing at once with the unit named; in this process with one model when Ray is not up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.stage import ActorStage, Counters, Pool, Stage, Unit, execute

HERE = Path(__file__).resolve().parent


@dataclass
class Ctx:
    out: str


class Echo(ActorStage):
    """Writes ``<out>/<unit>.json`` saying which model (one per setup) and process did the unit.

    Unit ``bad`` fails deterministically; unit ``flaky`` fails transiently on its first attempt;
    unit ``crash`` kills its actor's process on its first attempt, ``doomed`` on every attempt.
    """

    name = "echo"

    def __init__(self, names: list[str], size: int = 2, model_dir: str | None = None):
        self.names = names
        self.size = size
        self.model_dir = model_dir

    def units(self, ctx):
        for name in self.names:
            yield Unit(name, group="toys")

    def done(self, unit, ctx):
        return (Path(ctx.out) / f"{unit.name}.json").exists()

    def pool(self, ctx):
        return Pool(size=self.size, num_cpus=0.5)

    def setup(self, ctx):
        if self.model_dir and not Path(self.model_dir).exists():
            raise FileNotFoundError(f"model directory {self.model_dir} not found")
        return {"model": uuid.uuid4().hex, "pid": os.getpid()}

    def run_unit(self, unit, ctx, model):
        out = Path(ctx.out)
        with (out / f"{unit.name}.attempts").open("a") as f:
            f.write("x")
        if unit.name == "bad":
            raise ValueError("this unit's input is broken")
        attempts = len((out / f"{unit.name}.attempts").read_text())
        if unit.name == "flaky" and attempts == 1:
            raise ConnectionError("the store hung up")
        if unit.name == "doomed" or (unit.name == "crash" and attempts == 1):
            os._exit(1)  # as an out-of-memory kill or a lost node would end it
        (out / f"{unit.name}.json").write_text(json.dumps({**model, "ran_in": os.getpid()}))
        return Counters(samples=3, drops=Counter(short=1), tallies={"models": Counter({model["model"]: 1})})


class Plain(Stage):
    name = "plain"

    def units(self, ctx):
        yield Unit("one")

    def done(self, unit, ctx):
        return False

    def run_unit(self, unit, ctx):
        return Counters(samples=1)


def written(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


@pytest.fixture
def ray_workers(local_ray):
    """Ray workers unpickle this module's stages by value (the tests folder is not importable there)."""
    import ray.cloudpickle

    from pipelines.runtime import ensure_ray

    ensure_ray(None, num_cpus=2)  # again, should a module before this one have shut it down
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_actor_pool_builds_one_model_per_actor_skips_done_units_and_merges_counters(ray_workers, tmp_path):
    names = [f"u{i}" for i in range(6)]
    report = execute(Echo(names, size=2), Ctx(str(tmp_path)))

    assert (report.units, report.skipped) == (6, 0)
    assert report.counters.to_json()["samples"] == 18 and report.counters.drops == {"short": 6}
    assert report.groups["toys"].samples == 18
    units = written(tmp_path)
    assert sorted(units) == names
    models = {u["model"] for u in units.values()}
    assert 1 <= len(models) <= 2, "a model is built once per actor, not per unit"
    assert sum(report.counters.tallies["models"].values()) == 6 and set(report.counters.tallies["models"]) == models
    assert all(u["ran_in"] == u["pid"] != os.getpid() for u in units.values()), "units ran on the actors"

    again = execute(Echo(names, size=2), Ctx(str(tmp_path)))
    assert (again.units, again.skipped, again.counters.samples) == (6, 6, 0)
    assert written(tmp_path) == units
    assert all((tmp_path / f"{n}.attempts").read_text() == "x" for n in names)


def test_actor_pool_retries_a_transient_error_and_fails_at_once_naming_a_deterministic_one(ray_workers, tmp_path):
    report = execute(Echo(["flaky"], size=1), Ctx(str(tmp_path)))
    assert report.counters.samples == 3 and (tmp_path / "flaky.attempts").read_text() == "xx"

    with pytest.raises(ValueError, match="input is broken") as failure:
        execute(Echo(["a", "bad", "c"], size=1), Ctx(str(tmp_path)))
    assert "stage 'echo': unit 'bad' of toys failed" in failure.value.__notes__
    assert (tmp_path / "bad.attempts").read_text() == "x", "a deterministic error is not retried"
    assert "a" in written(tmp_path) and "c" not in written(tmp_path), "the stage stops at the failure"


def test_a_unit_whose_actor_died_runs_again_on_a_new_actor_at_most_twice(ray_workers, tmp_path):
    import ray

    report = execute(Echo(["crash"], size=1), Ctx(str(tmp_path)))
    assert report.counters.samples == 3 and (tmp_path / "crash.attempts").read_text() == "xx"
    assert "crash" in written(tmp_path)

    with pytest.raises(ray.exceptions.RayActorError):
        execute(Echo(["doomed"], size=1), Ctx(str(tmp_path)))
    assert (tmp_path / "doomed.attempts").read_text() == "xxx", "run once, then twice more, then given up"


def test_a_model_that_cannot_be_built_fails_the_stage_before_any_unit(ray_workers, tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory") as failure:
        execute(Echo(["a", "b"], size=1, model_dir=str(tmp_path / "nowhere")), Ctx(str(tmp_path)))
    assert "stage 'echo': setup (building an actor's model) failed" in failure.value.__notes__
    assert not list(tmp_path.glob("*.attempts"))


def test_task_stages_keep_their_shape_and_report(ray_workers):
    report = execute(Plain(), None)
    assert report.to_json() == {"units": 1, "skipped": 0, "samples": 1, "drops": {}, "groups": {"": {"samples": 1, "drops": {}}}}


IN_PROCESS = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import ray
from test_stage_actors import Ctx, Echo, written
from pipelines.stage import execute
from pathlib import Path
report = execute(Echo(["u0", "u1", "u2"], size=2), Ctx(sys.argv[2]))
try:
    execute(Echo(["bad"]), Ctx(sys.argv[2]))
except ValueError as err:
    notes = err.__notes__
print(json.dumps({"ray": ray.is_initialized(), "pid": os.getpid(), "samples": report.counters.samples,
                  "units": written(Path(sys.argv[2])), "notes": notes}))
"""


def test_without_ray_units_run_in_this_process_with_one_model(tmp_path):
    result = subprocess.run([sys.executable, "-c", IN_PROCESS, str(HERE), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert not out["ray"] and out["samples"] == 9
    assert sorted(out["units"]) == ["u0", "u1", "u2"]
    assert {u["model"] for u in out["units"].values()} == {out["units"]["u0"]["model"]}
    assert {u["ran_in"] for u in out["units"].values()} == {out["pid"]}
    assert out["notes"] == ["stage 'echo': unit 'bad' of toys failed"]


def test_a_short_of_gpus_cluster_is_said_so(local_ray, caplog):
    import ray

    from pipelines.runtime import warn_if_short_of_gpus

    with caplog.at_level("WARNING", logger="pipelines.runtime"):
        warn_if_short_of_gpus(ray, "ocr signs", ray.cluster_resources().get("GPU", 0) + 1)
    assert "ocr signs: each actor needs" in caplog.text and "Waiting for GPUs" in caplog.text


def test_pool_settings_are_checked():
    with pytest.raises(ValueError, match="size must be >= 1"):
        Pool(size=0)


class Store(Stage):
    """Ray-task units under the one transient rule: ``flaky`` raises a stage's own ``TransientError`` on its
    first attempt, ``missing`` a ``FileNotFoundError`` (an ``OSError``, yet deterministic) every time."""

    name = "store"

    def __init__(self, names: list[str]):
        self.names = names

    def units(self, ctx):
        yield from (Unit(name) for name in self.names)

    def done(self, unit, ctx):
        return False

    def run_unit(self, unit, ctx):
        from pipelines.errors import TransientError

        attempts = Path(ctx.out) / f"{unit.name}.attempts"
        with attempts.open("a") as f:
            f.write("x")
        if unit.name == "missing":
            raise FileNotFoundError("shard 00003.tar is not there")
        if unit.name == "flaky" and len(attempts.read_text()) == 1:
            raise type("StoreHungUp", (TransientError,), {})("the object store hung up")
        return Counters(samples=1)


def test_ray_task_units_follow_the_one_transient_rule_and_raise_their_own_error(ray_workers, tmp_path):
    report = execute(Store(["flaky"]), Ctx(str(tmp_path)))
    assert report.counters.samples == 1 and (tmp_path / "flaky.attempts").read_text() == "xx"

    with pytest.raises(FileNotFoundError, match="00003.tar") as failure:
        execute(Store(["missing"]), Ctx(str(tmp_path)))
    assert "stage 'store': unit 'missing' failed" in failure.value.__notes__
    assert (tmp_path / "missing.attempts").read_text() == "x", "a deterministic OSError is not retried"


def test_units_failed_says_itself_whether_a_rerun_may_succeed():
    import pickle

    from pipelines.errors import UnitsFailed, is_transient

    gone = UnitsFailed("parts failed", {"coyo/zh/00001": "ServerUnavailable: gone"}, transient=True)
    broken = UnitsFailed("parts failed", {"coyo/zh/00002": "ValueError: bad row"}, transient=False)
    assert is_transient(gone) and not is_transient(broken)
    again = pickle.loads(pickle.dumps(gone))  # as Ray and Prefect carry it
    assert again.failed == gone.failed and is_transient(again)
