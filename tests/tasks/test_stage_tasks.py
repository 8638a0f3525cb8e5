"""The executor's task shape on a real local Ray: a cap on units in flight holds, and a stage holding
a large list reaches every task (sent once through the object store, not rebuilt per unit)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.stage import Counters, Stage, Unit, execute


@dataclass
class Ctx:
    out: str


class Timed(Stage):
    """Each unit sleeps a little and records when it ran, in which process, and what it was given."""

    name = "timed"
    num_cpus = 0.25  # so without a cap all of them could run at once on 2 CPUs

    def __init__(self, count: int, cap: int | None, payload: list[int]):
        self.count, self.max_in_flight, self.payload = count, cap, payload

    def units(self, ctx):
        for i in range(self.count):
            yield Unit(f"{i:03d}")

    def done(self, unit, ctx):
        return (Path(ctx.out) / f"{unit.name}.txt").exists()

    def run_unit(self, unit, ctx):
        start = time.monotonic()
        time.sleep(1.0)
        (Path(ctx.out) / f"{unit.name}.txt").write_text(f"{start} {time.monotonic()} {os.getpid()} {sum(self.payload)}")
        return Counters(samples=1)


def _spans(out: Path) -> list[tuple[float, float, int, int]]:
    spans = []
    for path in sorted(out.glob("*.txt")):
        start, end, pid, total = path.read_text().split()
        spans.append((float(start), float(end), int(pid), int(total)))
    return spans


def _most_at_once(spans) -> int:
    events = sorted([(s, 1) for s, *_ in spans] + [(e, -1) for _, e, *_ in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_max_in_flight_caps_the_units_running_at_once(tmp_path, local_ray):
    payload = list(range(200_000))
    capped, free = tmp_path / "capped", tmp_path / "free"
    capped.mkdir()
    free.mkdir()
    report = execute(Timed(6, 1, payload), Ctx(str(capped)))
    assert report.counters.samples == 6
    spans = _spans(capped)
    assert len(spans) == 6 and _most_at_once(spans) == 1, "units overlapped despite max_in_flight=1"
    assert {total for *_, total in spans} == {sum(payload)}  # the stage's own data reached every task
    assert os.getpid() not in {pid for _, _, pid, _ in spans}  # and ran on Ray workers, not the driver
    execute(Timed(6, None, payload), Ctx(str(free)))
    assert _most_at_once(_spans(free)) >= 2, "without a cap, units run side by side"
