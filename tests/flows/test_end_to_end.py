"""The whole build-pretrain-mix flow on a small demo mixture, with one more language added by config.

Every stage runs for real: loopback downloads, PP-OCR on Ray, translation through a vLLM server that
vlmix starts from ./.venv-vllm, task samples, the mixer, the shards, verification and a few steps
of the tiny model. Japanese is added as a target by overrides alone, and must reach the shards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / ".venv-vllm" / "bin" / "python").exists(),
                       reason="needs ./.venv-vllm (scripts/setup_vllm.sh, run by scripts/setup.sh)"),
]


@pytest.fixture(scope="module")
def prefect_ephemeral(tmp_path_factory):
    saved = dict(os.environ)
    os.environ.update({"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    os.environ.pop("PREFECT_API_URL", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_whole_flow_with_a_language_added_by_config(tmp_path, prefect_ephemeral, local_ray):
    from flows.build_pretrain_mix import build_pretrain_mix
    from shards import verify

    overrides = [
        f"storage.root={tmp_path / 'root'}", f"demo.directory={tmp_path / 'demo'}", "demo.scale=0.04",
        f"translation.model={tmp_path / 'tiny-chat'}", "download.timeout_s=1", "mixture.total_samples=400",
        f"train.out={tmp_path / 'train'}", "train.steps=6",
        # The new language: one registry entry (already in demo.yaml: ja), listed as a target.
        "translation.targets=[zh, ja]", "sources.1.translate_to=[zh, ja]",
    ]
    records = build_pretrain_mix(config=str(REPO / "configs" / "demo.yaml"), overrides=overrides)
    assert list(records) == ["download", "ocr", "translate", "tasks", "mix", "train"]
    assert all(not r["skipped"] for r in records.values())

    translated = records["translate"]["summary"]["demo_objects365"]
    assert set(translated) == {"zh", "ja"} and translated["ja"]["translated"] > 0
    manifest = json.loads((tmp_path / "root" / "shards" / "manifest.json").read_text())
    assert manifest["languages"]["ja"]["samples"] > 0
    assert "demo_objects365-ja" in manifest["sources"]
    for task, share in {"captioning": 0.539, "detection": 0.052, "ocr_large": 0.32, "ocr_small": 0.089}.items():
        assert abs(manifest["tasks"][task]["achieved_share"] - share) <= 0.005
    assert verify(tmp_path / "root" / "shards").problems == []

    train = records["train"]["summary"]
    assert train["steps"] == 6 and train["last_loss"] < train["first_loss"]

    again = build_pretrain_mix(config=str(REPO / "configs" / "demo.yaml"), overrides=overrides)
    assert all(r["skipped"] for r in again.values())  # nothing changed: every stage is skipped
