"""The build-pretrain-mix flow: runs its stages on the demo mixture, and a rerun skips them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_flow_runs_stages_and_skips_them_when_unchanged(tmp_path, prefect_ephemeral, local_ray):
    from flows.build_pretrain_mix import build_pretrain_mix

    overrides = [f"storage.root={tmp_path / 'root'}", f"demo.directory={tmp_path / 'demo'}", "demo.scale=0.03",
                 "download.timeout_s=1"]
    first = build_pretrain_mix(config=str(REPO / "configs" / "demo.yaml"), stages=["download"], overrides=overrides)
    assert not first["download"]["skipped"]
    summary = first["download"]["summary"]
    assert set(summary) == {"demo_laion_en", "demo_objects365", "demo_wukong_ocr", "demo_laioncoco_ocr", "demo_synthdog"}
    assert all(s["downloaded"] > 0 for s in summary.values())
    marker = json.loads((tmp_path / "root" / "_stages" / "download.json").read_text())
    assert marker["summary"] == summary

    second = build_pretrain_mix(config=str(REPO / "configs" / "demo.yaml"), stages=["download"], overrides=overrides)
    assert second["download"]["skipped"] and second["download"]["summary"] == summary

    changed = build_pretrain_mix(config=str(REPO / "configs" / "demo.yaml"), stages=["download"],
                                 overrides=[*overrides, "seed=5"])
    assert not changed["download"]["skipped"]


def test_unknown_stage_is_refused(prefect_ephemeral):
    from flows.build_pretrain_mix import build_pretrain_mix

    with pytest.raises(ValueError, match="unknown stages"):
        build_pretrain_mix(config=str(REPO / "configs" / "demo.yaml"), stages=["dowload"])
