"""The shipped configs/pretrain.yaml, end to end, on a tiny copy of every dataset in its published format.

Only what a user changes is overridden: where the inputs are (``paths.data``), where the outputs go
(``storage.root``), which Ray (local), which model translates (a tiny one the test builds, served by
vLLM from ./.venv-vllm), and sizes. Every source of Table 1a must reach the shards and the manifest,
at the report's task shares. The translation cache holds reference translations of the inputs' texts,
as a team's cache holds what earlier runs translated: the tiny model's own answers are noise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pretrain_inputs import make_pretrain_inputs

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = REPO / "configs" / "pretrain.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / ".venv-vllm" / "bin" / "python").exists(),
                       reason="needs ./.venv-vllm (scripts/setup_vllm.sh, run by scripts/setup.sh)"),
]


def _fill_translation_cache(config, memory: dict[str, dict[str, str]]) -> None:
    from pipelines.storage import Storage
    from translate.cache import CachedAnswer, TranslationCache, text_hash
    from translate.prompt import PROMPT_VERSION

    storage = Storage(config.storage.root)
    cache = TranslationCache(storage, storage.path("translate", "_cache"), config.translation.model, PROMPT_VERSION)
    for target, texts in memory.items():
        cache.add(target, [(text_hash(text), text, CachedAnswer(answer, "stop")) for text, answer in texts.items()])


def test_the_shipped_pretrain_config_runs_on_every_dataset_in_its_published_format(tmp_path, prefect_ephemeral,
                                                                                     local_ray):
    from decontam import DecontamSettings
    from flows.build_pretrain_mix import build_pretrain_mix
    from flows.config import load_config
    from shards import verify
    from tests.commented import commented_section
    from translate.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny-chat")
    with make_pretrain_inputs(tmp_path / "data", per_source=6, seed=0) as inputs:
        # The config's decontaminate block, uncommented, against an evaluation set that holds three of
        # LAION-EN's pictures (a folder of images, no questions) instead of its own.
        block = commented_section(PRETRAIN, "decontaminate")
        DecontamSettings.model_validate(block)  # the shipped block as it stands
        held_out = tmp_path / "eval"
        held_out.mkdir()
        for picture in sorted((Path(inputs.data_dir) / "_web" / "laion_en").glob("*.jpg"))[:3]:
            shutil.copy(picture, held_out / picture.name)
        block["evaluation_sets"] = [{"name": "held_out", "format": "folder", "path": str(held_out)}]
        overrides = [
            f"paths.data={inputs.data_dir}", f"storage.root={tmp_path / 'root'}", "ray.address=null",
            f"translation.model={model}", "translation.concurrency=8",
            "download.timeout_s=3", "download.samples_per_shard=16", "download.threads_per_worker=8",
            "mixture.total_samples=600", "shards.max_samples=200",
            f"decontaminate={json.dumps(block)}",
        ]
        config = load_config(PRETRAIN, overrides=overrides)
        _fill_translation_cache(config, inputs.translations)
        records = build_pretrain_mix(config=str(PRETRAIN), overrides=overrides)

    assert list(records) == ["download", "pdf", "ocr", "translate", "tasks", "decontam", "mix"]
    manifest = json.loads((tmp_path / "root" / "shards" / "manifest.json").read_text())
    datasets = manifest["sources"]
    for source in config.sources:
        # A source reaches the mixture as itself and/or its translated variants (<source>-<language>).
        names = ([source.name] if source.keep_original else []) + [f"{source.name}-{t}" for t in source.translate_to]
        for name in names:
            assert datasets.get(name, {}).get("samples", 0) > 0, f"{name} has no samples in the shards"
    for task, share in {"captioning": 0.539, "detection": 0.052, "ocr_large": 0.32, "ocr_small": 0.089}.items():
        assert abs(manifest["tasks"][task]["achieved_share"] - share) <= 0.005, (task, manifest["tasks"][task])
    assert manifest["languages"]["zh"]["samples"] > 0 and manifest["languages"]["en"]["samples"] > 0
    assert verify(tmp_path / "root" / "shards").problems == []
    # Dropped URL-list rows are counted by reason, not lost: LAION-multi's other languages, unsafe rows.
    download = manifest["drops"]["download"]
    assert download["laion_zh"]["filtered"].get("language_not_kept", 0) > 0
    # Decontamination: every stage that read an image hashed it there (the task stage, the OCR actor, the PDF
    # stage, the transcriptions, the translated variants), so the decontam stage decoded none; the held-out
    # pictures are taken out of LAION-EN (and its translated variant) and listed for audit.
    import pyarrow.parquet as pq

    for table in sorted((tmp_path / "root" / "tasks").glob("*/*.parquet")):
        hashes = pq.read_table(table, columns=["image_phash", "image_dhash"])
        assert hashes["image_dhash"].null_count == 0 and hashes["image_phash"].null_count == 0, table
    for corpus in sorted((tmp_path / "root" / "ocr").glob("*/*.parquet")):
        rows = pq.read_table(corpus, columns=["image_phash", "drop_reason"]).to_pylist()
        assert all(row["image_phash"] is not None for row in rows if row["drop_reason"] != "undecodable_image"), corpus
    decontam = manifest["drops"]["decontam"]
    assert decontam["laion_en"]["contamination"] >= 1, decontam
    audit = pq.read_table(tmp_path / "root" / "decontam" / "contamination.parquet").to_pylist()
    assert {row["eval_set"] for row in audit} == {"held_out"}
    assert {row["eval_item"] for row in audit} <= {picture.name for picture in held_out.iterdir()}
