"""Progress a person can follow: per stage, units done of total, samples/s, ETA and drops so far.

A stage makes one :class:`Progress` per piece of work and advances it as units (shards, parts)
finish::

    progress = Progress("ocr", total=len(pending), unit="shards", label=source)
    for shard in pending:
        ...
        progress.advance(samples=rows, drops=dropped)   # one unit done
    progress.done()

It logs a line at most every ``every_s`` seconds (and always the last one)::

    ocr demo_wukong_ocr: 3/8 shards (38%), 412 samples, 12.3 samples/s, ETA 41 s, drops 17

through Prefect's run logger inside a Prefect run (so the line reaches the run's logs in the UI)
and this module's logger otherwise. When ``$VLMIX_PROGRESS_FILE`` names a file (the local launcher,
``python -m flows.local run``, sets it), each line is also appended there as one JSON object, with
the stage events of the flow (:func:`stage_event`), so the launcher can show them in the terminal
whatever the Prefect server is doing. Writing progress never fails a stage.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

PROGRESS_FILE_ENV = "VLMIX_PROGRESS_FILE"
_write_lock = threading.Lock()


def record(event: dict[str, Any]) -> None:
    """Append ``event`` (plus a timestamp) to ``$VLMIX_PROGRESS_FILE`` as one JSON line, if it is set."""
    path = os.environ.get(PROGRESS_FILE_ENV)
    if not path:
        return
    line = json.dumps({"t": round(time.time(), 3), **event}, ensure_ascii=False, default=str)
    try:
        with _write_lock, open(path, "a", encoding="utf-8") as sink:
            sink.write(line + "\n")
    except OSError as err:  # a progress line is never worth a stage
        log.debug("could not write progress to %s: %s", path, err)


def stage_event(stage: str, status: str, **fields: Any) -> None:
    """A stage ``started``, ``completed``, ``skipped``, ``retrying`` or ``failed`` (with ``error``)."""
    record({"kind": "stage", "stage": stage, "status": status, **fields})


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a Prefect flow or task run, else this module's logger."""
    if "prefect" in sys.modules:  # never import Prefect just for this
        try:
            from prefect.context import FlowRunContext, TaskRunContext
            from prefect.logging import get_run_logger

            if TaskRunContext.get() or FlowRunContext.get():
                return get_run_logger()
        except Exception:  # noqa: BLE001 - any trouble here: plain logging
            pass
    return log


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Units done of ``total`` for one stage (and optionally one ``label``: a source), rate-limited lines.

    ``advance`` is thread-safe, so asyncio tasks and threads of one stage can share one reporter.
    Extra counters passed to ``advance`` (``requests=3``) are summed and shown too.
    """

    def __init__(self, stage: str, total: int | None, unit: str = "units", label: str | None = None,
                 every_s: float = 5.0):
        self.stage = stage
        self.total = total
        self.unit = unit
        self.label = label
        self.every_s = every_s
        self.units = 0
        self.samples = 0
        self.drops = 0
        self.counters: Counter[str] = Counter()
        self._started = time.monotonic()
        self._last_line: float | None = None  # the first advance always writes a line
        self._lock = threading.Lock()
        self._finished = False

    def advance(self, units: int = 1, samples: int = 0, drops: int = 0, **counters: int) -> None:
        """``units`` more done, with the ``samples`` they produced and the ``drops`` among them."""
        with self._lock:
            self.units += units
            self.samples += samples
            self.drops += drops
            self.counters.update({k: v for k, v in counters.items() if v})
            now = time.monotonic()
            due = (self._last_line is None or now - self._last_line >= self.every_s
                   or (self.total is not None and self.units >= self.total))
            if due:
                self._last_line = now
                self._emit(now)

    def skip(self, units: int) -> None:
        """``units`` of the total were finished by an earlier run: not work, not counted in the rate."""
        with self._lock:
            if self.total is not None:
                self.total = max(0, self.total - units)

    def done(self) -> None:
        """The last line (unless ``advance`` just wrote it for the final unit)."""
        with self._lock:
            nothing = self.total == 0 and not self.units  # all done by earlier runs: no line
            if not (self._finished or nothing) and (self.total is None or self.units < self.total
                                                     or self._last_line is None):
                self._emit(time.monotonic())
            self._finished = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.done()

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-6, (now or time.monotonic()) - self._started)
        name = f"{self.stage} {self.label}" if self.label else self.stage
        if self.total:
            head = f"{self.units}/{self.total} {self.unit} ({self.units / self.total:.0%})"
        else:
            head = f"{self.units} {self.unit}"
        parts = [head, f"{self.samples} samples", f"{self.samples / elapsed:.1f} samples/s"]
        if self.total is not None and self.units < self.total:
            parts.append(f"ETA {_duration((self.total - self.units) * elapsed / self.units)}" if self.units
                         else "ETA unknown")
        elif self.total is not None:
            parts.append(f"done in {_duration(elapsed)}")
        parts.append(f"drops {self.drops}")
        parts += [f"{name_} {count}" for name_, count in sorted(self.counters.items())]
        return f"{name}: " + ", ".join(parts)

    def _emit(self, now: float) -> None:
        text = self.line(now)
        try:
            _logger().info(text)
        except Exception:  # noqa: BLE001 - e.g. a Prefect API that went away: never fail the stage
            log.info(text)
        elapsed = now - self._started
        record({"kind": "progress", "stage": self.stage, "label": self.label, "unit": self.unit,
                "done": self.units, "total": self.total, "samples": self.samples, "drops": self.drops,
                "samples_per_s": round(self.samples / max(elapsed, 1e-6), 2), "text": text,
                **dict(self.counters)})
