"""The stage registry drives the flow and the CLI: one Prefect task per enabled stage, in order.

The flow tests run the real flow (Prefect's ephemeral mode) on a storage root whose stage markers
say every stage already completed for that config, so each task runs, skips its unchanged work
(:func:`flows.stages.run_stage`) and records its artifact in well under a minute.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from flows.config import load_config
from flows.registry import REGISTRY, STAGE_NAMES, StageSelectionError, before, enabled_stages, select

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs" / "demo.yaml")

# What each stage's artifact reads of its summary.
SUMMARIES = {
    "download": {"demo_laion_en": {"urls": 10, "downloaded": 8, "filtered": {"too_small": 1}, "failed": {"timeout": 1},
                                   "recovered_by_retry": 0}},
    "pdf": {"demo_cc_pdf": {"samples": 3, "pages": {"files": 2, "text_layer": 3}, "ocr_reasons": {}, "drops": {}}},
    "ocr": {"demo_wukong_ocr": {"kept": 5, "dropped": {"no_text": 2}}},
    "translate": {"demo_objects365": {"zh": {"rows": 4, "translated": 4, "flagged": {}, "requests": 0, "from_cache": 4}}},
    "tasks": {"demo_laion_en": {"datasets": ["demo_laion_en"], "samples": 8, "drops": {}}},
    "mix": {"directory": "/nowhere/shards", "tasks": {"captioning": {"target_share": 1.0, "achieved_share": 1.0,
                                                                     "samples": 8}}},
    "train": {"out": "/nowhere/train", "steps": 4, "first_loss": 9.0, "last_loss": 7.0},
}
ARTIFACTS = {"download": "download-stats", "pdf": "pdf-stats", "ocr": "ocr-stats", "translate": "translation-stats",
             "mix": "mixture-shares", "train": "training"}


def _completed(config, names) -> None:
    """Markers for ``names`` as their runs would leave them, each upstream's fingerprint included."""
    from flows.stages import stage_fingerprint, upstream_fingerprints
    from pipelines.storage import Storage

    storage = Storage(config.storage.root, config.storage.options)
    for name in names:
        fingerprint = stage_fingerprint(config, name, upstream_fingerprints(config, before(name)))
        storage.write_json(storage.path("_stages", f"{name}.json"),
                           {"stage": name, "fingerprint": fingerprint, "seconds": 0.1,
                            "summary": SUMMARIES[name], "skipped": False})


def _runs_of(flow_run_id) -> tuple[list, list]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    async def read():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return runs, artifacts

    # Prefect records task runs from events, a moment after the flow returns: wait until each has started.
    deadline = time.monotonic() + 30
    while True:
        runs, artifacts = asyncio.run(read())
        if all(run.start_time is not None for run in runs) or time.monotonic() > deadline:
            return sorted(runs, key=lambda run: run.start_time), artifacts
        time.sleep(0.5)


@pytest.mark.parametrize("train", [True, False], ids=["train-configured", "train-not-configured"])
def test_the_flow_runs_one_task_per_enabled_stage_in_registry_order(tmp_path, prefect_ephemeral, train):
    from flows.build_pretrain_mix import build_pretrain_mix

    overrides = [f"storage.root={tmp_path / 'root'}", f"demo.directory={tmp_path / 'demo'}",
                 *([] if train else ["train=null"])]
    config = load_config(DEMO, overrides=overrides)
    expected = [stage.name for stage in enabled_stages(config)]
    # The demo has OCR and PDF sources, and no `decontaminate` section.
    assert expected == [name for name in STAGE_NAMES if name != "decontam" and (train or name != "train")]
    _completed(config, expected)

    state = build_pretrain_mix(config=DEMO, overrides=overrides, return_state=True)
    records = state.result()
    assert list(records) == expected
    assert all(record["skipped"] and record["summary"] == SUMMARIES[name] for name, record in records.items())
    runs, artifacts = _runs_of(state.state_details.flow_run_id)
    assert [run.name.rsplit("-", 1)[0] for run in runs] == expected
    assert all(run.state.is_completed() and run.run_count == 1 for run in runs)
    keys = {artifact.key for artifact in artifacts}
    assert keys == {"mixture-report", *(ARTIFACTS[name] for name in expected if name in ARTIFACTS)}
    if not train:  # the disabled stage did not run: no task, no record, no marker
        assert "train" not in records and not (tmp_path / "root" / "_stages" / "train.json").exists()


def test_a_disabled_stage_asked_for_fails_the_flow_before_any_task(tmp_path, prefect_ephemeral):
    from flows.build_pretrain_mix import build_pretrain_mix

    overrides = [f"storage.root={tmp_path / 'root'}", "train=null"]
    state = build_pretrain_mix(config=DEMO, stages=["mix", "train"], overrides=overrides, return_state=True)
    assert state.is_failed()
    with pytest.raises(StageSelectionError, match="'train' is not enabled by this config.*`train` section"):
        state.result()
    runs, _ = _runs_of(state.state_details.flow_run_id)
    assert runs == []


def test_each_stage_task_has_its_registry_entry_options():
    from flows import build_pretrain_mix

    assert list(build_pretrain_mix.TASKS) == list(STAGE_NAMES)
    for stage in REGISTRY:
        task = build_pretrain_mix.TASKS[stage.name]
        assert (task.name, task.retries, task.retry_delay_seconds, task.description) == (
            stage.name, stage.retries, stage.retry_delay_seconds, stage.description)
        assert task.retry_condition_fn is stage.retry_condition_fn
    assert len({task.task_key for task in build_pretrain_mix.TASKS.values()}) == len(STAGE_NAMES)
    assert build_pretrain_mix.TASKS["translate"].retries >= 1  # ServerUnavailable is retried


def _no_ocr_config(tmp_path: Path) -> Path:
    """The demo without its OCR sources and OCR tasks."""
    raw = yaml.safe_load(Path(DEMO).read_text())
    raw["sources"] = [s for s in raw["sources"] if not s["task"].startswith("ocr")]
    raw["tasks"] = {"captioning": {"share": 0.9}, "detection": {"share": 0.1}}
    raw["storage"]["root"] = str(tmp_path / "root")
    raw["demo"]["directory"] = str(tmp_path / "demo")
    path = tmp_path / "no-ocr.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_selection_follows_the_config_and_the_dependencies(tmp_path):
    no_ocr = load_config(_no_ocr_config(tmp_path))
    assert [s.name for s in select(no_ocr)] == ["download", "translate", "tasks", "mix", "train"]
    with pytest.raises(StageSelectionError, match="'ocr' is not enabled.*`ocr`"):
        select(no_ocr, ["ocr"])

    demo = load_config(DEMO, overrides=[f"storage.root={tmp_path / 'demo-root'}"])
    assert [s.name for s in select(demo, ["tasks", "download", "translate"])] == ["download", "translate", "tasks"]
    with pytest.raises(StageSelectionError, match="unknown stages \\['dowload'\\]"):
        select(demo, ["dowload"])
    with pytest.raises(StageSelectionError,
                       match=r"'mix' reads the outputs of \['pdf', 'ocr', 'tasks'\].*--stage pdf --stage ocr --stage tasks"):
        select(demo, ["mix"])
    _completed(demo, ["download", "pdf", "ocr", "translate", "tasks"])
    assert [s.name for s in select(demo, ["mix"])] == ["mix"]  # its inputs completed in an earlier run
    # The config without OCR sources needs no OCR run before its mix.
    _completed(no_ocr, ["download", "translate", "tasks"])
    assert [s.name for s in select(no_ocr, ["mix"])] == ["mix"]


def test_a_config_that_translates_nothing_needs_no_translation_stage(tmp_path):
    path = _no_ocr_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    for source in raw["sources"]:
        source.pop("translate_to", None)
        source.pop("keep_original", None)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    config = load_config(path)
    assert [s.name for s in select(config)] == ["download", "tasks", "mix", "train"]
    assert [s.name for s in select(config, ["download", "tasks"])] == ["download", "tasks"]
    with pytest.raises(StageSelectionError, match="'translate' is not enabled.*`translate_to`"):
        select(config, ["translate"])


def test_the_cli_chooses_among_the_registry_stages(tmp_path, capsys):
    from flows.cli import main

    with pytest.raises(SystemExit) as refused:  # an unknown stage: argparse names the registry's stages
        main(["run", "-c", DEMO, "--stage", "dowload"])
    assert refused.value.code == 2
    assert f"choose from {', '.join(repr(name) for name in STAGE_NAMES)}" in capsys.readouterr().err
    # Refused before Prefect starts, as invalid input.
    assert main(["run", "-c", DEMO, "--set", f"storage.root={tmp_path}", "--set", "train=null", "--stage", "train"]) == 2
    assert "'train' is not enabled by this config" in capsys.readouterr().err
    assert main(["stages", "-c", str(_no_ocr_config(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(STAGE_NAMES)
    assert "off (runs when" in lines[STAGE_NAMES.index("ocr")] and lines[0].endswith("runs")


def test_the_launcher_refuses_an_unknown_stage_before_anything_starts(capsys):
    from flows.report import check_config

    assert check_config({"config": str(DEMO), "stages": ["dowload"]}) is None
    assert "unknown stages ['dowload']; the stages are ['download', 'pdf', 'ocr'," in capsys.readouterr().out
    assert check_config({"config": str(DEMO), "stages": ["download"]}) is not None


def test_every_stage_is_entered_one_way_run_over_its_own_context():
    """Each registered stage (but training, which has its own CLI) is entered through its package's
    `entry.run(ctx)`, ctx a frozen StageContext of that package; the registry's function calls it."""
    import dataclasses
    import importlib
    import inspect

    from pipelines.stage import StageContext

    packages = {"download": "download", "pdf": "pdf", "ocr": "ocr", "translate": "translate", "tasks": "tasks",
                "decontam": "decontam", "mix": "shards"}
    assert {stage.name for stage in REGISTRY} - {"train"} == set(packages)
    for stage in REGISTRY:
        if stage.name == "train":
            continue
        entry = importlib.import_module(f"{packages[stage.name]}.entry")
        contexts = [obj for obj in vars(entry).values() if inspect.isclass(obj) and issubclass(obj, StageContext)
                    and obj.__module__ == entry.__name__]
        assert len(contexts) == 1, (stage.name, contexts)
        assert dataclasses.is_dataclass(contexts[0]) and contexts[0].__dataclass_params__.frozen
        assert list(inspect.signature(entry.run).parameters) == ["ctx"]
        called = inspect.getsource(stage.run) + (inspect.getsource(importlib.import_module("flows.translation"))
                                                 if stage.name == "translate" else "")
        assert f"from {entry.__name__} import" in called, stage.name
