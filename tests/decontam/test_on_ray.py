"""The stage's units run as Ray tasks (the session's local Ray): near-duplicates and contamination found."""

from __future__ import annotations

import pyarrow.parquet as pq

from decontam import DecontamSettings, EvaluationSet, run_decontam
from pipelines.layout.removals import AUDIT, REMOVALS_DIR
from tests.decontam.images import encode, picture
from tests.decontam.tables import sample, write


def test_the_stage_runs_on_ray(tmp_path, local_ray):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "chart.png").write_bytes(encode(picture(50), "PNG"))
    for name, quality in (("web", 90), ("coco", 60)):
        # coco's captions ("coco 0") are one character richer than web's ("web 0"): web's copies go.
        write(tmp_path, name, [sample(tmp_path, name, f"{name}{i}", encode(picture(i), quality=quality),
                                      "Describe.", f"{name} {i}") for i in range(4)]
              + [sample(tmp_path, name, "leak", encode(picture(50).resize((100, 75))), "Describe.", "A chart.")])
    settings = DecontamSettings(evaluation_sets=[EvaluationSet(name="charts", format="folder",
                                                               path=str(tmp_path / "eval"))])
    summary = run_decontam(tmp_path, settings, order=["web", "coco"])
    assert summary["removed"] == {"coco": {"contamination": 1}, "web": {"contamination": 1, "near_duplicate": 4}}
    web = pq.read_table(tmp_path / REMOVALS_DIR / "web").to_pylist()
    assert sorted(row["kept"] for row in web if row["reason"] == "near_duplicate") == [f"coco-coco{i}" for i in range(4)]
    audit = pq.read_table(tmp_path / REMOVALS_DIR / AUDIT).to_pylist()
    assert sorted((row["key"], row["eval_set"], row["eval_item"]) for row in audit) == [
        ("coco-leak", "charts", "chart.png"), ("web-leak", "charts", "chart.png")]
