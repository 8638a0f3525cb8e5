"""The `decontaminate` section of a mixture config: checked at load time, and it turns the stage on."""

from __future__ import annotations

import pytest

from flows.assemble import mix_settings, ocr_run, pdf_run, task_settings
from flows.config import ConfigError, load_config
from flows.registry import enabled_stages
from tests.conftest import REPO

DEMO = REPO / "configs" / "demo.yaml"


def test_the_section_enables_the_stage_before_the_mix(tmp_path):
    plain = load_config(DEMO)
    assert plain.decontaminate is None and "decontam" not in [s.name for s in enabled_stages(plain)]
    config = load_config(DEMO, overrides=[
        f"decontaminate={{evaluation_sets: [{{name: docvqa, format: folder, path: {tmp_path}}}], "
        "near_duplicates: {max_distance: 6}}"])
    names = [s.name for s in enabled_stages(config)]
    assert names.index("tasks") < names.index("decontam") < names.index("mix")
    assert config.decontaminate.near_duplicates.max_distance == 6 and config.decontaminate.distance == 10
    # The mix leaves out the stage's lists only when the config runs the stage.
    assert mix_settings(config).decontaminated and not mix_settings(plain).decontaminated
    # The task stage hashes each image as it reads it only for a run that decontaminates.
    assert task_settings(config).perceptual_hash and not task_settings(plain).perceptual_hash
    # So do the OCR stage (its tables and transcriptions) and the PDF stage (its text-layer pages).
    assert ocr_run(config).perceptual_hash and not ocr_run(plain).perceptual_hash
    assert pdf_run(config).settings.perceptual_hash and not pdf_run(plain).settings.perceptual_hash


def test_a_typo_or_an_unknown_format_fails_at_load_time():
    with pytest.raises(ConfigError, match="decontaminate.near_duplicates.max_distanse"):
        load_config(DEMO, overrides=["decontaminate={near_duplicates: {max_distanse: 6}}"])
    with pytest.raises(ConfigError, match=r"decontaminate.evaluation_sets\[0\] \(x\).format: got .csv."):
        load_config(DEMO, overrides=["decontaminate={evaluation_sets: [{name: x, format: csv, path: /x}]}"])


def test_evaluation_paths_take_references_like_source_locations(tmp_path):
    config = load_config(DEMO, overrides=[f"demo.directory={tmp_path}", "decontaminate={evaluation_sets: "
                                          "[{name: d, format: folder, path: '${demo.directory}/eval'}]}"])
    assert config.decontaminate.evaluation_sets[0].path == f"{tmp_path}/eval"
