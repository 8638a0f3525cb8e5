"""The ``build-pretrain-mix`` Prefect flow: one task per stage, each calling that stage's own function.

No stage logic lives here. Each stage runs its work on Ray (local by default, the cluster named by
the config's ``ray.address`` otherwise), skips itself when its inputs and config are unchanged
(:mod:`pipelines.stages`), and resumes at shard level when it was interrupted.

Run it through a deployment (``prefect deployment run build-pretrain-mix/local``), or with no
Prefect server at all: ``vlmix run --config configs/demo.yaml``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipelines.assemble import build_tasks_stage, mix_stage, ocr_stage, train_stage, translate_stage
from pipelines.config import Config, load_config
from pipelines.download import run_download_stage
from pipelines.stages import run_stage

STAGES = ("download", "ocr", "translate", "tasks", "mix", "train")


@task(name="download", retries=2, retry_delay_seconds=10)
def download(config: Config) -> dict[str, Any]:
    """img2dataset over every URL-list source; resumes where a failed attempt stopped."""
    record = run_stage(config, "download", lambda: run_download_stage(config))
    rows = [
        {"source": name, "urls": s["urls"], "downloaded": s["downloaded"],
         "filtered": sum(s["filtered"].values()), "failed": sum(s["failed"].values()),
         "recovered_by_retry": s["recovered_by_retry"]}
        for name, s in record["summary"].items()
    ]
    create_table_artifact(key="download-stats", table=rows, description="URLs per source: what became of each")
    return record


@task(name="ocr", retries=1, retry_delay_seconds=10)
def ocr(config: Config) -> dict[str, Any]:
    """PP-OCR over the OCR sources' images (Ray actors), then their OCR task samples."""
    record = run_stage(config, "ocr", lambda: ocr_stage(config), upstream=_upstream(config, "ocr"))
    rows = [{"source": name, "kept": v.get("kept"), "dropped": sum((v.get("dropped") or {}).values())}
            for name, v in record["summary"].items()]
    create_table_artifact(key="ocr-stats", table=rows, description="images with text kept per OCR source")
    return record


@task(name="translate", retries=2, retry_delay_seconds=30)
def translate(config: Config) -> dict[str, Any]:
    """English annotations into the target languages (Figure-5 prompt, vLLM); resumes per part."""
    record = run_stage(config, "translate", lambda: translate_stage(config), upstream=_upstream(config, "translate"))
    rows = [{"source": source, "target": target, "rows": v["rows"], "translated": v["translated"],
             "flagged": sum(v["flagged"].values()), "requests": v["requests"], "from_cache": v["from_cache"]}
            for source, by_target in record["summary"].items() for target, v in by_target.items()]
    create_table_artifact(key="translation-stats", table=rows, description="translated texts per source and target")
    return record


@task(name="tasks", retries=1, retry_delay_seconds=5)
def tasks(config: Config) -> dict[str, Any]:
    """Task-sample tables (captioning, detection, translated variants) for every source."""
    return run_stage(config, "tasks", lambda: build_tasks_stage(config), upstream=_upstream(config, "tasks"))


@task(name="mix")
def mix(config: Config) -> dict[str, Any]:
    """Draw the mixture to the task shares, write and verify the shards and manifest."""
    record = run_stage(config, "mix", lambda: mix_stage(config), upstream=_upstream(config, "mix"))
    summary = record["summary"]
    rows = [{"task": task, "target": f"{v['target_share']:.1%}", "achieved": f"{v['achieved_share']:.1%}",
             "samples": v["samples"]} for task, v in summary["tasks"].items()]
    create_table_artifact(key="mixture-shares", table=rows, description=f"shards in {summary['directory']}")
    return record


@task(name="train")
def train(config: Config) -> dict[str, Any]:
    """Train the configured model for the configured steps from the shards (the config's `train`)."""
    record = run_stage(config, "train", lambda: train_stage(config), upstream=_upstream(config, "train"))
    summary = record["summary"]
    create_table_artifact(key="training", table=[summary], description="first and last loss of the run")
    return record


def _upstream(config: Config, stage: str) -> list[str]:
    """Fingerprints of the stages before ``stage``, so a changed upstream reruns it."""
    from pipelines.stages import completed_fingerprint

    before = STAGES[: STAGES.index(stage)]
    return [completed_fingerprint(config, name) or "" for name in before]


_TASKS = {"download": download, "ocr": ocr, "translate": translate, "tasks": tasks, "mix": mix, "train": train}


@flow(name="build-pretrain-mix")
def build_pretrain_mix(
    config: str = "configs/demo.yaml",
    stages: list[str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Build the mixture described by ``config``: the named ``stages`` (default: all), in order.

    ``overrides`` are ``dotted.path=value`` strings applied to the config, e.g.
    ``["translation.targets=[zh, ja]"]``.
    """
    logger = get_run_logger()
    loaded = load_config(config, overrides=overrides or [])
    chosen = list(STAGES) if not stages else [s for s in STAGES if s in stages]
    if loaded.train is None and not stages:
        chosen.remove("train")  # training is part of a run only when the config asks for it
    unknown = set(stages or []) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; the stages are {list(STAGES)}")
    logger.info("config %s (hash %s), stages %s", config, loaded.fingerprint()[:12], chosen)
    records = {}
    for stage in chosen:
        records[stage] = _TASKS[stage](loaded)
        state = "skipped (unchanged)" if records[stage]["skipped"] else f"done in {records[stage]['seconds']} s"
        logger.info("stage %s: %s", stage, state)
    lines = [f"# build-pretrain-mix: `{config}`", "", f"config hash `{loaded.fingerprint()[:16]}`, "
             f"storage root `{loaded.storage.root}`", "", "| stage | result |", "| --- | --- |"]
    lines += [f"| {stage} | {'skipped' if r['skipped'] else 'ran'} |" for stage, r in records.items()]
    create_markdown_artifact(key="mixture-report", markdown="\n".join(lines), description="the run's summary")
    return records
