"""The ``build-pretrain-mix`` Prefect flow: one task per stage of :mod:`flows.registry`, each calling
that stage's own function.

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

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.config import Config, load_config
from flows.registry import REGISTRY, Stage, before, select
from flows.stages import run_stage, upstream_fingerprints
from pipelines.progress import stage_event

__all__ = ["TASKS", "build_pretrain_mix"]


def _artifact(create, **kwargs) -> None:
    """Record an artifact; a failure to (the server busy or gone) is a warning, never a failed stage."""
    try:
        create(**kwargs)
    except Exception as err:  # noqa: BLE001 - the stage's work is done and on disk whatever happens here
        get_run_logger().warning("could not record the %s artifact (%s: %s); the stage's results are "
                                 "on disk all the same", kwargs.get("key"), type(err).__name__, err)


def stage_task(stage: Stage) -> Task:
    """The Prefect task of a registered stage: its marker-guarded work, then its table artifact."""

    def run(config: Config) -> dict[str, Any]:
        record = run_stage(config, stage.name, lambda: stage.run(config),
                           upstream=upstream_fingerprints(config, before(stage.name)),
                           skip_unchanged=stage.skip_unchanged)
        if stage.artifact is not None:
            key, rows, description = stage.artifact(record["summary"])
            _artifact(create_table_artifact, key=key, table=rows, description=description)
        return record

    # Prefect keys a task by its function's name and code: one name per stage keeps their keys apart.
    run.__name__ = run.__qualname__ = stage.name
    run.__doc__ = stage.description
    return task(run, name=stage.name, description=stage.description, retries=stage.retries,
                retry_delay_seconds=stage.retry_delay_seconds, retry_condition_fn=stage.retry_condition_fn,
                cache_policy=NO_CACHE)  # the stage's marker is the cache (flows.stages)


# One task per registered stage, in order.
TASKS: dict[str, Task] = {stage.name: stage_task(stage) for stage in REGISTRY}


@flow(name="build-pretrain-mix")
def build_pretrain_mix(
    config: str = "configs/demo.yaml",
    stages: list[str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Build the mixture described by ``config``: the named ``stages`` (default: every stage the
    config enables, :mod:`flows.registry`), in the registry's order.

    ``overrides`` are ``dotted.path=value`` strings applied to the config, e.g.
    ``["translation.targets=[zh, ja]"]``.
    """
    logger = get_run_logger()
    loaded = load_config(config, overrides=overrides or [])
    chosen = [entry.name for entry in select(loaded, stages)]  # flows.registry: enabled ones by default
    logger.info("config %s (hash %s), stages %s", config, loaded.fingerprint()[:12], chosen)
    records = {}
    for stage in chosen:
        stage_event(stage, "started")
        try:
            records[stage] = TASKS[stage](loaded)
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
