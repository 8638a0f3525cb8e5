"""Export for the official InternVL trainer: meta JSON + JSONL + images; the report."""

from __future__ import annotations

import json

from shards import ShardSettings, export_internvl, mix_and_write
from shards.cli import export_main
from shards.mix import MixSettings


def test_internvl_export_matches_the_mixture(task_root, tmp_path):
    shards = tmp_path / "shards"
    manifest = mix_and_write(str(task_root), shards, MixSettings(total_samples=900, seed=1), ShardSettings())
    meta_path = export_internvl(shards, tmp_path / "internvl")
    meta = json.loads(meta_path.read_text())

    assert set(meta) == set(manifest["sources"])
    for source, entry in meta.items():
        assert entry["data_augment"] is False and entry["repeat_time"] == 1
        assert entry["length"] == manifest["sources"][source]["samples"]
        lines = [json.loads(line) for line in open(entry["annotation"], encoding="utf-8")]
        assert len(lines) == entry["length"]
        for line in lines[:50]:
            assert line["conversations"][0]["from"] == "human"
            assert line["conversations"][0]["value"].startswith("<image>\n")
            image = (tmp_path / "internvl" / "images" / line["image"]).read_bytes()
            assert image[:2] in (b"\xff\xd8", b"\x89P")
        images = {line["image"] for line in lines}
        assert len(images) == manifest["sources"][source]["unique_samples"]  # repeats share their image
    assert export_main([str(shards), str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "meta.json").read_text()).keys() == meta.keys()
