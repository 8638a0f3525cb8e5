"""The stage as the flow runs it (its registry entry, on the session's local Ray): near-duplicates and
contamination found, the sources' order from the config."""

from __future__ import annotations

import pyarrow.parquet as pq

from flows.config import load_config
from flows.registry import BY_NAME
from pipelines.layout.removals import AUDIT, REMOVALS_DIR
from tests.conftest import REPO
from tests.decontam.images import encode, picture
from tests.decontam.tables import sample, write


def test_the_registry_entry_runs_the_stage_on_ray(tmp_path, local_ray):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "chart.png").write_bytes(encode(picture(50), "PNG"))
    for name, quality in (("demo_laion_en", 90), ("demo_coyo", 60)):
        # The config lists demo_laion_en before demo_coyo; equal captions: demo_coyo's copies go.
        write(tmp_path, name, [sample(tmp_path, name, f"p{i}", encode(picture(i), quality=quality), "Describe.",
                                      f"picture {i}") for i in range(4)]
              + [sample(tmp_path, name, "leak", encode(picture(50).resize((100, 75))), "Describe.", "A chart.")])
    config = load_config(REPO / "configs" / "demo.yaml", overrides=[
        f"storage.root={tmp_path}",
        f"decontaminate={{evaluation_sets: [{{name: charts, format: folder, path: {tmp_path / 'eval'}}}]}}"])
    names = [source.name for source in config.sources]
    assert names.index("demo_laion_en") < names.index("demo_coyo")
    entry = BY_NAME["decontam"]
    summary = entry.run(config)
    assert summary["removed"] == {"demo_coyo": {"contamination": 1, "near_duplicate": 4},
                                  "demo_laion_en": {"contamination": 1}}
    coyo = pq.read_table(tmp_path / REMOVALS_DIR / "demo_coyo").to_pylist()
    assert sorted(row["kept"] for row in coyo if row["reason"] == "near_duplicate") == [
        f"demo_laion_en-p{i}" for i in range(4)]
    audit = pq.read_table(tmp_path / REMOVALS_DIR / AUDIT).to_pylist()
    assert sorted((row["key"], row["eval_set"], row["eval_item"]) for row in audit) == [
        ("demo_coyo-leak", "charts", "chart.png"), ("demo_laion_en-leak", "charts", "chart.png")]
    key, rows, _ = entry.artifact(summary)
    assert key == "decontamination" and {row["dataset"] for row in rows} == {"demo_coyo", "demo_laion_en"}
