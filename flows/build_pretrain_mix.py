"""The ``build-pretrain-mix`` Prefect flow: one task per stage, each calling that stage's own function.

No stage logic lives here. Each stage runs its work on Ray (local by default, the cluster named by
the config's ``ray.address`` otherwise), skips itself when its inputs and config are unchanged
(:mod:`flows.stages`), and resumes at shard level when it was interrupted.

Run it through a deployment (``prefect deployment run build-pretrain-mix/local``), or with no
Prefect server at all: ``vlmix run --config configs/demo.yaml``.

A task is retried only when its failure is transient (:mod:`flows.retry`): a configuration or
data error fails it at once with its message. Recording an artifact is best effort: a Prefect
server that cannot take it never fails a stage whose work is done (the stage's marker and outputs
are written before). Each stage's start and end also go to ``$VLMIX_PROGRESS_FILE`` when set
(:mod:`pipelines.progress`), which is how the local launcher follows a run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import STAGES
from flows.assemble import (
    build_tasks_stage,
    download_stage,
    mix_stage,
    ocr_stage,
    train_stage,
    translate_stage,
)
from flows.config import Config, load_config
from flows.retry import transient
from flows.stages import run_stage
from pipelines.progress import stage_event

__all__ = ["STAGES", "build_pretrain_mix"]


def _artifact(create, **kwargs) -> None:
    """Record an artifact; a failure to (the server busy or gone) is a warning, never a failed stage."""
    try:
        create(**kwargs)
    except Exception as err:  # noqa: BLE001 - the stage's work is done and on disk whatever happens here
        get_run_logger().warning("could not record the %s artifact (%s: %s); the stage's results are "
                                 "on disk all the same", kwargs.get("key"), type(err).__name__, err)


@task(name="download", retries=2, retry_delay_seconds=10, retry_condition_fn=transient)
def download(config: Config) -> dict[str, Any]:
    """img2dataset over every URL-list source; resumes where a failed attempt stopped."""
    record = run_stage(config, "download", lambda: download_stage(config))
    rows = [
        {"source": name, "urls": s["urls"], "downloaded": s["downloaded"],
         "filtered": sum(s["filtered"].values()), "failed": sum(s["failed"].values()),
         "recovered_by_retry": s["recovered_by_retry"]}
        for name, s in record["summary"].items()
    ]
    _artifact(create_table_artifact, key="download-stats", table=rows,
              description="URLs per source: what became of each")
    return record


@task(name="ocr", retries=1, retry_delay_seconds=10, retry_condition_fn=transient)
def ocr(config: Config) -> dict[str, Any]:
    """PP-OCR over the OCR sources' images (Ray actors), then their OCR task samples."""
    record = run_stage(config, "ocr", lambda: ocr_stage(config), upstream=_upstream(config, "ocr"))
    rows = [{"source": name, "kept": v.get("kept"), "dropped": sum((v.get("dropped") or {}).values())}
            for name, v in record["summary"].items()]
    _artifact(create_table_artifact, key="ocr-stats", table=rows, description="images with text kept per OCR source")
    return record


@task(name="translate", retries=2, retry_delay_seconds=30, retry_condition_fn=transient)
def translate(config: Config) -> dict[str, Any]:
    """English annotations into the target languages (Figure-5 prompt, vLLM); resumes per part."""
    record = run_stage(config, "translate", lambda: translate_stage(config), upstream=_upstream(config, "translate"))
    rows = [{"source": source, "target": target, "rows": v["rows"], "translated": v["translated"],
             "flagged": sum(v["flagged"].values()), "requests": v["requests"], "from_cache": v["from_cache"]}
            for source, by_target in record["summary"].items() for target, v in by_target.items()]
    _artifact(create_table_artifact, key="translation-stats", table=rows,
              description="translated texts per source and target: requests to the model, answers from the cache")
    return record


@task(name="tasks", retries=1, retry_delay_seconds=5, retry_condition_fn=transient)
def tasks(config: Config) -> dict[str, Any]:
    """Task-sample tables (captioning, detection, translated variants) for every source."""
    return run_stage(config, "tasks", lambda: build_tasks_stage(config), upstream=_upstream(config, "tasks"))


@task(name="mix", retries=1, retry_delay_seconds=5, retry_condition_fn=transient)
def mix(config: Config) -> dict[str, Any]:
    """Draw the mixture to the task shares, write and verify the shards and manifest."""
    record = run_stage(config, "mix", lambda: mix_stage(config), upstream=_upstream(config, "mix"))
    summary = record["summary"]
    rows = [{"task": task, "target": f"{v['target_share']:.1%}", "achieved": f"{v['achieved_share']:.1%}",
             "samples": v["samples"]} for task, v in summary["tasks"].items()]
    _artifact(create_table_artifact, key="mixture-shares", table=rows, description=f"shards in {summary['directory']}")
    return record


@task(name="train", retries=1, retry_delay_seconds=5, retry_condition_fn=transient)
def train(config: Config) -> dict[str, Any]:
    """Train the configured model for the configured steps from the shards (the config's `train`)."""
    record = run_stage(config, "train", lambda: train_stage(config), upstream=_upstream(config, "train"))
    summary = record["summary"]
    _artifact(create_table_artifact, key="training", table=[summary], description="first and last loss of the run")
    return record


def _upstream(config: Config, stage: str) -> list[str]:
    """Fingerprints of the stages before ``stage``, so a changed upstream reruns it."""
    from flows.stages import completed_fingerprint

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
        stage_event(stage, "started")
        try:
            records[stage] = _TASKS[stage](loaded)
        except Exception as err:
            stage_event(stage, "failed", error=f"{type(err).__name__}: {err}")
            raise
        skipped = records[stage]["skipped"]
        stage_event(stage, "skipped" if skipped else "completed", seconds=records[stage].get("seconds"))
        logger.info("stage %s: %s", stage, "skipped (unchanged)" if skipped else f"done in {records[stage]['seconds']} s")
    _artifact(create_markdown_artifact, key="mixture-report", markdown="\n".join(_report(config, loaded, records)),
              description="the run's summary")
    return records


def _report(config: str, loaded: Config, records: dict[str, Any]) -> list[str]:
    lines = [f"# build-pretrain-mix: `{config}`", "", f"config hash `{loaded.fingerprint()[:16]}`, "
             f"storage root `{loaded.storage.root}`", "", "| stage | result |", "| --- | --- |"]
    lines += [f"| {stage} | {'skipped' if r['skipped'] else 'ran'} |" for stage, r in records.items()]
    translated = records.get("translate", {}).get("summary") or {}
    if translated:
        lines += ["", "| source | target | texts | translated | requests | from cache | flagged |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for source, by_target in translated.items():
            for target, v in by_target.items():
                flagged = ", ".join(f"{k} {n}" for k, n in v["flagged"].items()) or "none"
                lines.append(f"| {source} | {target} | {v['rows']} | {v['translated']} | {v['requests']} | "
                             f"{v['from_cache']} | {flagged} |")
    return lines
