"""How the launcher shows a run's progress file, and which stage it names when a run fails."""

from __future__ import annotations

import json
import time

from flows.watch import RunWatch


def write(path, *events):
    with open(path, "a") as sink:
        for event in events:
            sink.write(json.dumps({"t": time.time(), **event}) + "\n")


def test_progress_lines_and_stage_ends_are_shown_a_skip_without_its_start(tmp_path):
    path = tmp_path / "run.jsonl"
    path.touch()
    shown: list[str] = []
    watch = RunWatch(path, shown.append)
    write(path, {"kind": "stage", "stage": "download", "status": "started"},
          {"kind": "stage", "stage": "download", "status": "skipped"},
          {"kind": "stage", "stage": "ocr", "status": "started"},
          {"kind": "progress", "stage": "ocr", "text": "ocr demo: 1/2 shards (50%), 9 samples"})
    with open(path, "a") as sink:
        sink.write('{"kind": "stage", "stage": "ocr", "sta')  # a line being written: not read yet
    watch.pump()
    assert [line.split("] ", 1)[1] for line in shown] == [
        "stage download: skipped (unchanged since its last run)", "stage ocr: started",
        "  ocr demo: 1/2 shards (50%), 9 samples"]
    with open(path, "a") as sink:
        sink.write('tus": "failed", "error": "ValueError: bad caption column"}\n')
    watch.pump()
    assert shown[-1].endswith("stage ocr: FAILED: ValueError: bad caption column")
    outcome = watch._failed("Flow run encountered an exception", None)
    assert (outcome.failed_stage, outcome.error) == ("ocr", "ValueError: bad caption column")


def test_a_run_that_dies_names_the_stage_that_was_running(tmp_path):
    path = tmp_path / "run.jsonl"
    write(path, {"kind": "stage", "stage": "download", "status": "started"},
          {"kind": "stage", "stage": "download", "status": "completed", "seconds": 12.5},
          {"kind": "stage", "stage": "translate", "status": "started"})
    shown: list[str] = []
    watch = RunWatch(path, shown.append)
    watch.pump()
    assert shown[-1].endswith("stage download: done in 12 s")
    outcome = watch._failed("the Prefect server was killed by signal 9", None)
    assert (outcome.failed_stage, outcome.error) == ("translate", "the Prefect server was killed by signal 9")
