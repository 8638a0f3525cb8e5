"""The shipped configs/finetune.yaml (Table 1b): every group a task, every dataset a source that builds
samples from a tiny copy in its published format, with only the data and storage paths overridden."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from flows.assemble import mix_settings
from flows.config import ConfigError, load_config
from tests.commented import commented_section

REPO = Path(__file__).resolve().parents[2]
FINETUNE = REPO / "configs" / "finetune.yaml"
TABLE_1B = {  # SPEC §1, Table 1b: group -> datasets
    "captioning": 2, "general_qa": 5, "science": 3, "chart": 5, "mathematics": 5, "knowledge": 4, "ocr": 11,
    "document": 2, "grounding": 2, "conversation": 6, "text_only": 4,
}
EN_ZH = {"sharegpt4v", "llava_150k", "allava", "svit", "sharegpt", "wikipedia"}
SHARED_WITH_PRETRAIN = ["textcaps", "chartqa", "mmc_inst", "plotqa", "infovqa", "art", "coco_text", "ctw", "lsvt",
                        "rctw17", "rects", "synthdog", "st_vqa", "docvqa"]


def test_every_table_1b_group_and_dataset_is_configured():
    config = load_config(FINETUNE)
    assert list(config.tasks) == list(TABLE_1B)
    by_task = Counter(source.task for source in config.sources)
    # RefCOCO/+/g are one row of the table and three sources here.
    assert {task: by_task[task] - (2 if task == "grounding" else 0) for task in TABLE_1B} == TABLE_1B
    assert {s.name for s in config.sources if s.translate_to == ["zh"] and s.keep_original} == EN_ZH
    assert all(source.obtain for source in config.sources)
    # InternVL's weighting: a source's repeat_time holds for its Chinese translation too.
    settings = mix_settings(config)
    assert settings.total_samples is None and settings.repeat_time["wikipedia-zh"] == 0.02
    assert set(settings.shares) == set(TABLE_1B)


@pytest.mark.parametrize("override, message", [
    ("mixture.repeat_time.nosuch=2", "mixture.repeat_time.nosuch: no source"),
    ("mixture.repeat_time.vqav2=-1", "repeat_time of 'vqav2' must be a finite number >= 0"),
    ("tasks.ocr.share=0.5", "tasks.ocr.share: shares do not apply with mixture.repeat_time"),
])
def test_a_bad_weighting_is_refused_at_validate(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(FINETUNE, overrides=[override])


def _no_preset_copies(data: Path) -> None:
    """GeoQA+ is read as InternVL's JSONL copy (its publisher ships pickles): one tiny file, an image beside it."""
    from PIL import Image

    for source, jsonl, images in [("geoqa_plus", "geoqa+.jsonl", "images")]:
        folder = data / source
        (folder / images).mkdir(parents=True)
        Image.new("RGB", (40, 30), (10, 120, 200)).save(folder / images / "0.jpg")
        line = {"id": 0, "image": "0.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                                             {"from": "gpt", "value": "A blue picture."}]}
        (folder / jsonl).write_text(json.dumps(line) + "\n")


def test_the_config_builds_every_group_into_the_shards_from_published_copies(tmp_path):
    """Task tables from every source's published copy, then the config's decontaminate block (against an
    evaluation set holding one of ChartQA's training charts), then the repeat_time mixture and its
    shards. No translation here (it needs vLLM): the en&zh sources give their English half."""
    from decontam import DecontamSettings, run_decontam
    from flows.assemble import task_settings
    from shards import ShardSettings, mix_and_write, verify
    from tasks.build import build_task_samples
    from tests.tasks import finetune_inputs, pretrain_published
    from tests.tasks.finetune_inputs_more import write_laion_gpt4v

    data = tmp_path / "data"
    finetune_inputs.write_all(data)
    for name in SHARED_WITH_PRETRAIN:
        pretrain_published.write(name, data, n=2)
    _no_preset_copies(data)
    write_laion_gpt4v(data, tmp_path / "root")  # a URL list: its raw shard stands for the download stage
    block = commented_section(FINETUNE, "decontaminate")
    DecontamSettings.model_validate(block)  # the shipped block as it stands
    leaked = tmp_path / "eval" / "charts"
    leaked.mkdir(parents=True)
    for chart in sorted((data / "chartqa" / "train" / "png").glob("*.png"))[:1]:
        shutil.copy(chart, leaked / chart.name)
    block["evaluation_sets"] = [{"name": "chartqa_test", "format": "folder", "path": str(leaked)}]
    # The tiny copies carry their awkward records in a handful: most of some are dropped on purpose.
    config = load_config(FINETUNE, overrides=[f"paths.data={data}", f"storage.root={tmp_path / 'root'}",
                                              "ray.address=null", "mixture.min_kept_share=0",
                                              f"decontaminate={json.dumps(block)}"])
    settings = task_settings(config)
    built = {}
    for source in config.sources:
        if source.kind == "pdf":  # the PDF stage's own tests cover it; DocVQA feeds the group here
            continue
        built[source.name] = build_task_samples(source.model_copy(update={"translate_to": []}),
                                                config.storage.root, settings).samples
    assert [name for name, samples in built.items() if not samples] == []
    summary = run_decontam(config.storage.root, config.decontaminate, order=[source.name for source in config.sources])
    # The chart leaves ChartQA; nothing else goes (near-duplicate removal is off in the block).
    assert {name: reasons for name, reasons in summary["removed"].items() if reasons} == {"chartqa": {"contamination": 1}}
    manifest = mix_and_write(config.storage.root, tmp_path / "shards", mix_settings(config),
                             ShardSettings(max_samples=200, report=False))
    assert {task for task, stats in manifest["tasks"].items() if stats["samples"]} == set(TABLE_1B)
    # Repeat times as configured: Wikipedia's 0.02 of a tiny copy rounds down to nothing, the rest are whole.
    assert manifest["sources"]["wikipedia"]["samples"] == 0
    assert all(stats["samples"] == stats["available"] for name, stats in manifest["sources"].items()
               if name not in config.mixture.repeat_time)
    assert manifest["sources"]["chartqa"]["contamination_removed"] == 1
    assert verify(tmp_path / "shards").ok
