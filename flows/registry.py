"""The pipeline's stages, in order: one entry per stage, read by the Prefect flow and by the CLI.

An entry names the stage (its Prefect task's name, its marker ``<root>/_stages/<name>.json``, its
progress events), the function in :mod:`flows.assemble` that runs it from the root config, when
the config enables it, the stages whose outputs it reads, its Prefect task options, the table
artifact its task records and what it dropped, for the manifest. :mod:`flows.build_pretrain_mix` makes one task per entry and
``vlmix run --stage`` chooses among them, so adding a stage is adding an entry here.

Resume: a stage whose config and upstream are unchanged since its last completed run is skipped
(its marker, :func:`flows.stages.run_stage`); every stage also resumes at shard level by itself.
Prefect's own result caching is not used. A task is retried only when its failure is transient
(:func:`flows.retry.transient`).

Nothing here imports Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flows import assemble
from flows.config import Config
from flows.retry import transient
from pipelines.storage import Storage
from tasks.kinds import kind_of

# (artifact key, rows, description) of a stage's table artifact, from its summary.
Table = tuple[str, list[dict[str, Any]], str]
# What a stage dropped, for the manifest's ``drops.<stage>``: {group: {reason: count}} (a downloaded
# source's group holds one such mapping per outcome, :meth:`DownloadStats.drops`).
Drops = dict[str, dict[str, Any]]
# A stage's drops from the storage root and its marker's summary (None: it never completed); None: none to report.
DropsOf = Callable[[Storage, dict[str, Any] | None], Drops | None]


class StageSelectionError(ValueError):
    """The stages asked for are unknown, not enabled by the config, or lack an input."""


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Config], dict[str, Any]]  # the stage's work; returns JSON-able counters
    description: str
    depends_on: tuple[str, ...] = ()  # stages whose outputs this one reads
    enabled: Callable[[Config], bool] | None = None  # None: every config runs it
    enabled_when: str = "always"  # when ``enabled`` holds, in words (for listings and errors)
    retries: int = 1  # attempts after the first, on transient errors only
    retry_delay_seconds: float = 5
    retry_condition_fn: Callable[..., bool] = transient
    skip_unchanged: bool = True  # skipped when its config and upstream match its last run's marker
    artifact: Callable[[dict[str, Any]], Table] | None = None
    drops: DropsOf | None = None  # what it dropped, for the manifest (flows.assemble.mix_stage)

    def enabled_for(self, config: Config) -> bool:
        return self.enabled is None or bool(self.enabled(config))


def _needs_ocr(config: Config) -> bool:
    """A source whose task tables the OCR stage writes: OCR corpora, or captions that are the image's text."""
    return any(not kind_of(source).built_by_task_stage(source) and kind_of(source).ocr_input(source) is not None
               for source in config.sources)  # a pdf source without `ocr` hands the OCR stage nothing


def _translates(config: Config) -> bool:
    """A source the task stage builds has a target language: the translation stage has work."""
    wanted = config.translation.targets
    return any(code in wanted or not wanted for source in assemble.task_sources(config) for code in source.translate_to)


def _download_table(summary: dict[str, Any]) -> Table:
    rows = [{"source": name, "urls": s["urls"], "downloaded": s["downloaded"],
             "filtered": sum(s["filtered"].values()), "failed": sum(s["failed"].values()),
             "recovered_by_retry": s["recovered_by_retry"]} for name, s in summary.items()]
    return "download-stats", rows, "URLs per source: what became of each"


def _ocr_table(summary: dict[str, Any]) -> Table:
    rows = [{"source": name, "kept": v.get("kept"), "dropped": sum((v.get("dropped") or {}).values())}
            for name, v in summary.items()]
    return "ocr-stats", rows, "images with text kept per OCR source"


def _pdf_table(summary: dict[str, Any]) -> Table:
    from pdf.stats import table_rows

    return ("pdf-stats", table_rows(summary),
            "pages per pdf source: from the text layer, to OCR and why, dropped and why, languages, render time")


def _translation_table(summary: dict[str, Any]) -> Table:
    rows = [{"source": source, "target": target, "rows": v["rows"], "translated": v["translated"],
             "flagged": sum(v["flagged"].values()), "requests": v["requests"], "from_cache": v["from_cache"],
             "prompt_tokens": v.get("prompt_tokens", 0), "completion_tokens": v.get("completion_tokens", 0),
             "tokens_per_s": (v.get("run") or {}).get("tokens_per_s"), "quality_mean": v.get("quality_mean"),
             "quality_method": v.get("quality_method")}
            for source, by_target in summary.items() for target, v in by_target.items()]
    return ("translation-stats", rows,
            "translated texts per source and target: requests to the model, answers from the cache, tokens "
            "(over every finished part; tokens/s this run's), mean quality score where scored (quality_method: "
            "back_translation chrF 0-100, encoder cosine -1 to 1)")


def _download_drops(storage: Storage, _summary: dict[str, Any] | None) -> Drops | None:
    """Every downloaded source's counters in the root (also those downloaded outside the flow)."""
    from download.stats import download_drops

    return download_drops(storage)


def _of_summary(drops: Callable[[dict[str, Any]], Drops]) -> DropsOf:
    """Drops that the stage's summary alone holds: none before the stage completed."""
    return lambda _storage, summary: None if summary is None else drops(summary)


def _mixture_table(summary: dict[str, Any]) -> Table:
    rows = [{"task": task, "target": f"{v['target_share']:.1%}", "achieved": f"{v['achieved_share']:.1%}",
             "samples": v["samples"]} for task, v in summary["tasks"].items()]
    return "mixture-shares", rows, f"shards in {summary['directory']}"


def _decontam_table(summary: dict[str, Any]) -> Table:
    rows = [{"dataset": name, **reasons} for name, reasons in summary["removed"].items()]
    return "decontamination", rows, f"samples removed per task-table dataset; evidence in {summary['audit']}"


def _training_table(summary: dict[str, Any]) -> Table:
    return "training", [summary], "first and last loss of the run"


REGISTRY: tuple[Stage, ...] = (
    Stage("download", assemble.download_stage,
          "img2dataset over every URL-list source; resumes where a failed attempt stopped.",
          retries=2, retry_delay_seconds=10, artifact=_download_table, drops=_download_drops),
    Stage("pdf", assemble.pdf_stage,
          "Render the PDF sources' pages (sandboxed pdfium); text-layer OCR samples, the rest to the OCR stage.",
          enabled=lambda config: bool(assemble.pdf_sources(config)), enabled_when="a source is of kind pdf",
          retries=1, retry_delay_seconds=10, artifact=_pdf_table, drops=_of_summary(assemble.pdf_drops)),
    Stage("ocr", assemble.ocr_stage,
          "PP-OCR over the OCR sources' images (Ray actors), then their OCR task samples.",
          depends_on=("download", "pdf"), enabled=_needs_ocr,
          enabled_when="a source has `ocr`, or is an OCR-task URL list whose caption is the image's text",
          retries=1, retry_delay_seconds=10, artifact=_ocr_table, drops=_of_summary(assemble.ocr_drops)),
    Stage("translate", assemble.translate_stage,
          "English annotations into the target languages (Figure-5 prompt, vLLM); resumes per part.",
          depends_on=("download",), enabled=_translates, enabled_when="a source of the task stage has `translate_to` "
          "(within `translation.targets` when given)",
          retries=2, retry_delay_seconds=30,  # ServerUnavailable: servers went away
          artifact=_translation_table, drops=_of_summary(assemble.translate_drops)),
    Stage("tasks", assemble.build_tasks_stage,
          "Task-sample tables (captioning, detection, translated variants) for every source.",
          depends_on=("download", "translate"), retries=1, retry_delay_seconds=5),
    Stage("decontam", assemble.decontam_stage,
          "Near-duplicate images across sources, and evaluation sets' images and texts, out of the mixture.",
          depends_on=("pdf", "ocr", "tasks"), enabled=lambda config: config.decontaminate is not None,
          enabled_when="the config has a `decontaminate` section", retries=1, retry_delay_seconds=5,
          artifact=_decontam_table),
    Stage("mix", assemble.mix_stage,
          "Draw the mixture to the task shares, write and verify the shards and manifest.",
          depends_on=("pdf", "ocr", "tasks", "decontam"), retries=1, retry_delay_seconds=5, artifact=_mixture_table),
    Stage("train", assemble.train_stage,
          "Train the configured model for the configured steps from the shards (the config's `train`).",
          depends_on=("mix",), enabled=lambda config: config.train is not None,
          enabled_when="the config has a `train` section", retries=1, retry_delay_seconds=5,
          artifact=_training_table),
)

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in REGISTRY)


def stage_drops(storage: Storage) -> dict[str, Drops]:
    """What the stages dropped, for the manifest's ``drops``: each entry's ``drops`` of the root and its
    marker's summary, one key per stage, each filled once, by its stage."""
    from flows.stages import read_summary

    drops: dict[str, Drops] = {}
    for stage in REGISTRY:
        if stage.drops is not None:
            counted = stage.drops(storage, read_summary(storage, stage.name))
            if counted is not None:
                drops[stage.name] = counted
    return drops
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in REGISTRY}


def _check(registry: tuple[Stage, ...]) -> None:
    """Unique names; every dependency registered before the stage that reads it."""
    seen: list[str] = []
    for stage in registry:
        if stage.name in seen:
            raise RuntimeError(f"flows.registry: stage {stage.name!r} is registered twice")
        later = [name for name in stage.depends_on if name not in seen]
        if later:
            raise RuntimeError(f"flows.registry: stage {stage.name!r} depends on {later}, "
                               f"which {'is' if len(later) == 1 else 'are'} not registered before it")
        seen.append(stage.name)


_check(REGISTRY)


def before(name: str) -> tuple[str, ...]:
    """The stages registered before ``name``: their fingerprints are its upstream."""
    return STAGE_NAMES[: STAGE_NAMES.index(name)]


def enabled_stages(config: Config) -> list[Stage]:
    """The stages a run of ``config`` runs when none are named: the enabled ones, in order."""
    return [stage for stage in REGISTRY if stage.enabled_for(config)]


def select(config: Config, names: Iterable[str] | None = None) -> list[Stage]:
    """The stages to run, in registry order: the named ones, else every stage ``config`` enables.

    A named stage must be known and enabled by ``config``; each stage it depends on that the
    config enables must be named too or have completed (its marker) in the storage root.
    """
    names = list(names or [])
    if not names:
        return enabled_stages(config)
    unknown = sorted(set(names) - set(STAGE_NAMES))
    if unknown:
        raise StageSelectionError(f"unknown stages {unknown}; the stages are {list(STAGE_NAMES)}")
    chosen = [stage for stage in REGISTRY if stage.name in names]
    for entry in chosen:
        if not entry.enabled_for(config):
            raise StageSelectionError(f"stage {entry.name!r} is not enabled by this config: it runs only when "
                                      f"{entry.enabled_when}")
    from flows.stages import completed_fingerprint

    for entry in chosen:
        missing = [dep for dep in entry.depends_on if dep not in names and BY_NAME[dep].enabled_for(config)
                   and completed_fingerprint(config, dep) is None]
        if missing:
            raise StageSelectionError(
                f"stage {entry.name!r} reads the outputs of {missing}, which never completed in "
                f"{config.storage.root}: run {' '.join(f'--stage {dep}' for dep in missing)} too")
    return chosen
