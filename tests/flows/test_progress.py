"""The progress reporter stages call: lines with units, samples/s, ETA and drops, rate-limited, to a file too."""

from __future__ import annotations

import json
import logging

from pipelines.progress import PROGRESS_FILE_ENV, Progress, stage_event


def test_lines_carry_units_rate_eta_and_drops(tmp_path, monkeypatch, caplog):
    sink = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(sink))
    caplog.set_level(logging.INFO, logger="pipelines.progress")
    progress = Progress("ocr", total=4, unit="shards", label="demo_wukong_ocr", every_s=0)
    progress.advance(samples=100, drops=3)
    progress.advance(samples=50, drops=1, requests=7)
    line = progress.line()
    assert line.startswith("ocr demo_wukong_ocr: 2/4 shards (50%), 150 samples, ")
    assert "samples/s" in line and "ETA " in line and "drops 4" in line and "requests 7" in line
    progress.advance(units=2, samples=10)
    progress.done()
    events = [json.loads(x) for x in sink.read_text().splitlines()]
    assert [e["done"] for e in events] == [1, 2, 4]  # done() adds nothing after the final unit's line
    assert events[-1]["drops"] == 4 and events[-1]["samples"] == 160 and "done in" in events[-1]["text"]
    assert [r.getMessage() for r in caplog.records] == [e["text"] for e in events]


def test_lines_are_rate_limited_but_the_last_one_is_written(tmp_path, monkeypatch):
    sink = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(sink))
    progress = Progress("translate", total=50, unit="parts", every_s=3600)
    for _ in range(50):
        progress.advance(samples=2)
    events = [json.loads(x) for x in sink.read_text().splitlines()]
    assert [e["done"] for e in events] == [1, 50]


def test_skipped_units_leave_the_total_and_an_unknown_total_has_no_eta(tmp_path, monkeypatch):
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(tmp_path / "p.jsonl"))
    progress = Progress("translate", total=10, unit="parts", every_s=3600)
    progress.skip(8)
    progress.advance()
    assert "1/2 parts (50%)" in progress.line()
    open_ended = Progress("download", total=None, unit="shards")
    open_ended.advance(samples=5)
    assert "ETA" not in open_ended.line() and "1 shards" in open_ended.line()


def test_stage_events_go_to_the_file_and_nothing_fails_without_one(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    stage_event("mix", "started")  # no file configured: nothing to do, no error
    Progress("mix", total=1).advance()
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(tmp_path / "missing-dir" / "p.jsonl"))
    stage_event("mix", "failed", error="ValueError: bad")  # unwritable: a debug line, no error
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(tmp_path / "p.jsonl"))
    stage_event("mix", "failed", error="ValueError: bad")
    (event,) = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert event["kind"] == "stage" and event["stage"] == "mix" and event["error"] == "ValueError: bad"
