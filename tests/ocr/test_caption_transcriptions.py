"""URL lists of rendered text: each sample's caption is its image's exact text, so its OCR sample needs no
model (ocr/captions.py, run by the OCR stage on the one executor)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pyarrow.parquet as pq

from ocr.captions import CaptionTranscriptions, TranscriptionContext
from pipelines.stage import execute

_spec = importlib.util.spec_from_file_location("_tasks_build", Path(__file__).parents[1] / "tasks" / "test_tasks_build.py")
_build = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _build
_spec.loader.exec_module(_build)  # its raw-shard writer: img2dataset's output layout

PROMPTS = {"en": ["Read the text."], "zh": ["图中文字是什么？"]}
SCRIPTS = {"en": ["Latin"], "zh": ["Han"]}


def test_each_caption_becomes_its_images_transcription_in_its_language_and_empty_ones_are_counted(tmp_path):
    records = [{"key": "000000001", "image": _build.jpeg(40, 30, 1), "caption": "Total 42 units"},
               {"key": "000000002", "image": _build.jpeg(40, 30, 2), "caption": "北京欢迎你"},
               {"key": "000000003", "image": _build.jpeg(40, 30, 3), "caption": "   "}]
    _build.write_raw_shard(tmp_path, "synthdog", "00000", [dict(r) for r in records])
    _build.write_raw_shard(tmp_path, "synthdog", "00001", [dict(records[0], key="000000004")], complete=False)
    ctx = TranscriptionContext(str(tmp_path), seed=5, prompts=PROMPTS, scripts=SCRIPTS)

    report = execute(CaptionTranscriptions("synthdog", "synthdog", "ocr_small", "auto"), ctx)
    assert (report.units, report.counters.samples, dict(report.counters.drops)) == (1, 2, {"empty_caption": 1})
    rows = {row["key"]: row for row in pq.read_table(tmp_path / "tasks" / "synthdog" / "00000.parquet").to_pylist()}
    assert sorted(rows) == ["000000001", "000000002"]  # the unfinished shard waits for its download
    for key, language, text in [("000000001", "en", "Total 42 units"), ("000000002", "zh", "北京欢迎你")]:
        human, gpt = rows[key]["conversations"]
        assert rows[key]["language"] == language and rows[key]["task"] == "ocr_small"
        assert human["value"] == f"<image>\n{PROMPTS[language][0]}" and gpt["value"] == text

    again = execute(CaptionTranscriptions("synthdog", "synthdog", "ocr_small", "auto"), ctx)
    assert (again.skipped, again.counters.samples) == (1, 0)  # a rerun redoes nothing
