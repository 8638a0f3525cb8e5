"""From the mixture config to the task-sample and shard stages' own settings, and running them.

The stages (``tasks``, ``shards.mix``, ``shards``) take small settings objects of
their own; this module derives them from a :class:`~flows.config.Config`, so a user writes one
config and the flow calls one function per stage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flows.config import Config, Language, Source
from pipelines.errors import UnitsFailed
from tasks.kinds import kind_of

log = logging.getLogger(__name__)

def downloaded_sources(config: Config, names: list[str] | None = None) -> list[Source]:
    """The sources whose kind downloads its images (URL lists), less those reusing another's images."""
    chosen = [s for s in config.sources if kind_of(s).downloads and s.images_from is None
              and (names is None or s.name in names)]
    if names:
        unknown = set(names) - {s.name for s in chosen}
        if unknown:
            raise ValueError(f"no URL-list source named {sorted(unknown)}")
    return chosen


def download_all(config: Config, names: list[str] | None = None, progress: bool = True) -> dict:
    """Download every URL-list source of ``config`` (or the named ones) on Ray; stats per source."""
    from download.stage import download_sources
    from pipelines.runtime import ensure_ray

    ensure_ray(config.ray.address, config.ray.num_cpus)
    ctx = download_run(config, names)
    return download_sources(list(ctx.sources), ctx.settings, ctx.storage(), progress)


def download_run(config: Config, names: list[str] | None = None):
    """The download stage's context from the config: its settings and the URL lists to fetch."""
    from download.entry import DownloadRun

    storage = config.storage.open()
    return DownloadRun(storage.root_uri(), dict(storage.options), settings=config.download,
                       sources=tuple(downloaded_sources(config, names)))


def download_stage(config: Config) -> dict[str, dict]:
    """The stage as the flow runs it: demo sources served when configured, every URL list downloaded."""
    from download.entry import run
    from flows.demo.serve import serve_for_config
    from pipelines.runtime import ensure_ray

    with serve_for_config(config):
        ensure_ray(config.ray.address, config.ray.num_cpus)
        return run(download_run(config))


def ocr_stage(config: Config) -> dict[str, Any]:
    """OCR corpora and their task tables for sources with ``ocr``; transcription samples for OCR-task
    URL lists whose caption is the exact text (SynthDoG-style). Returns per-source counters."""
    from ocr.entry import run
    from pipelines.runtime import ensure_ray

    ensure_ray(config.ray.address, config.ray.num_cpus)  # the configured Ray, before any OCR unit runs
    return run(ocr_run(config))


def ocr_run(config: Config):
    """The OCR stage's context from the config: which sources it reads (by their kinds), and how."""
    from ocr.entry import OcrInput, OcrRun

    inputs = []
    for source in config.sources:
        kind = kind_of(source)
        raw_source = kind.ocr_input(source)
        if kind.built_by_task_stage(source) or raw_source is None:
            continue
        inputs.append(OcrInput(source.name, raw_source, source.task, source.language,
                               source.ocr.language if source.ocr is not None else None))
    languages = sorted({*config.languages, "en", *(s.language for s in inputs if s.language != "auto")})
    storage = config.storage.open()
    return OcrRun(storage.root_uri(), dict(config.storage.options), engine=config.ocr, style=config.ocr_tasks,
                  seed=config.seed, prompts=config.ocr_prompts(),
                  transcribe_prompts={code: config.prompt_pool("transcribe", code) for code in languages},
                  scripts={code: list(language.scripts) for code, language in config.languages.items()},
                  sources=tuple(inputs), perceptual_hash=config.decontaminate is not None)


def pdf_sources(config: Config) -> list[Source]:
    """The sources of kind ``pdf``: PDF files the PDF stage renders."""
    return [s for s in config.sources if kind_of(s).name == "pdf"]


def pdf_stage(config: Config) -> dict[str, Any]:
    """Render every PDF source's pages; text-layer samples, and pages for the OCR stage (``pdf/``)."""
    from pdf.entry import run
    from pipelines.runtime import ensure_ray

    if not pdf_sources(config):
        return {}
    ensure_ray(config.ray.address, config.ray.num_cpus)
    if config.demo is not None:  # the demo's PDFs: English, Chinese, two columns, scans, lying layers, broken files
        from pathlib import Path as LocalPath

        from pdf.generate import demo_corpus

        demo_corpus(LocalPath(config.demo.directory) / "pdfs", seed=config.seed)
    return run(pdf_run(config))


def pdf_run(config: Config):
    """The PDF stage's context from the config: its settings with the seed, prompt pools and scripts
    the config's languages give, the PDF sources, the download stage's guarded fetch."""
    from pdf.entry import PdfRun
    from pdf.settings import PdfSettings

    settings = PdfSettings(
        **config.pdf.model_dump(), seed=config.seed,
        # English pages too, whatever the registry lists (as for caption transcriptions)
        prompts={purpose: {code: config.prompt_pool(purpose, code) for code in {*config.languages, "en"}}
                 for purpose in ("transcribe", "grounded")},
        scripts={code: list(language.scripts) for code, language in config.languages.items()},
        perceptual_hash=config.decontaminate is not None)
    storage = config.storage.open()
    return PdfRun(storage.root_uri(), dict(storage.options), settings=settings, sources=tuple(pdf_sources(config)),
                  fetch=pdf_fetcher(config))


def pdf_fetcher(config: Config):
    """The download stage's guarded fetch (size cap, budget per URL, redirects, per-host limit) for PDF
    URL lists, as the picklable ``url -> (bytes | None, reason | None, transient)`` the PDF stage takes."""
    import functools

    from download.fetch import FetchPolicy

    d = config.download
    policy = FetchPolicy(max_bytes=d.max_body_bytes, budget_s=d.url_budget_s, max_redirects=d.max_redirects,
                         per_host=d.max_connections_per_host, max_wait_s=d.max_retry_after_s)
    return functools.partial(fetch_pdf, policy=policy, timeout=d.timeout_s, agent=d.user_agent_token)


def fetch_pdf(url: str, policy, timeout: float, agent: str) -> tuple[bytes | None, str | None, bool]:
    """One PDF URL through the download stage's fetch; a failure as the download stage names it."""
    from download.fetch import fetch
    from download.guards import classify_error

    try:
        return fetch(url, policy, timeout, agent), None, False
    except Exception as err:  # every failure is a counted reason, as for images
        reason, transient = classify_error(str(err) or type(err).__name__)
        return None, reason, transient


def pdf_drops(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    """What :func:`pdf_stage`'s ``summary`` says it dropped: per source, files and pages by reason."""
    return {source: counts.get("drops", {}) for source, counts in summary.items()}


def ocr_drops(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    """What :func:`ocr_stage`'s ``summary`` says it dropped: per source, images by reason."""
    return {source: counts.get("dropped", {}) for source, counts in summary.items()}


def language_of(text: str, languages: dict[str, Language]) -> str:
    """The configured language whose scripts write most of ``text`` (:func:`pipelines.languages.language_of`)."""
    from pipelines.languages import language_of as by_scripts

    return by_scripts(text, {code: language.scripts for code, language in languages.items()})


def translate_stage(config: Config) -> dict[str, Any]:
    """Translate every source's English texts into its targets (Figure-5 prompt, vLLM); per-target counts.

    The inputs are the task builder's own drafts, one input part per task unit, extracted by Ray
    tasks, so each translation names the exact field (``caption``, ``objects.<i>.name``,
    ``ref_exps.<i>``, ``conversations`` for a whole conversation) the builder of that unit reads back.
    """
    from flows.translation import run_translation, source_targets
    from pipelines.runtime import ensure_ray
    from pipelines.stage import execute
    from tasks.stage import TranslationInputs

    storage = config.storage.open()
    _demo_files(config)
    chosen = [s for s in task_sources(config) if source_targets(config, s)]
    if not chosen:
        return {}
    ensure_ray(config.ray.address, config.ray.num_cpus)
    execute(TranslationInputs(chosen), task_context(config))
    if config.demo is not None:
        from flows.demo.translation import prepare_demo_translation

        prepare_demo_translation(config, storage, chosen)
    reports = run_translation(config, config.translation.stage, sources=[s.name for s in chosen])
    failed = {f"{s}/{t}/{part}": error for s, by in reports.items() for t, r in by.items()
              for part, error in r.failed.items()}
    if failed:
        # Transient when every failed part's error was (servers that went away): the flow retries the stage.
        transient = all(part in r.transient for by in reports.values() for r in by.values() for part in r.failed)
        raise UnitsFailed(f"translation parts failed (rerun to resume; finished parts are kept): {failed}",
                          failed, transient)
    return {source: {target: report.stats.to_json() for target, report in by_target.items()}
            for source, by_target in reports.items()}


def translate_drops(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    """What :func:`translate_stage`'s ``summary`` says it flagged: per ``<source>/<target>``, rows by reason."""
    from translate.translator import PartStats

    return {f"{source}/{target}": PartStats.from_json(stats).flagged
            for source, by_target in summary.items() for target, stats in by_target.items()}


def _demo_files(config: Config) -> None:
    """The fine-tuning demo's sources are local files: written (once) before a stage reads them."""
    if config.demo is not None and config.demo.finetune:
        from flows.demo.finetune import generate_finetune

        generate_finetune(config.demo.directory, config.seed, config.demo.scale)


def task_sources(config: Config) -> list[Source]:
    """Sources whose samples the task stage builds (OCR corpora are built by the OCR stage)."""
    return [s for s in config.sources if kind_of(s).built_by_task_stage(s)]


def task_settings(config: Config):
    from tasks import TaskSettings

    return TaskSettings(**config.task_samples.model_dump(), seed=config.seed, prompts=config.task_prompts(),
                        scripts={code: list(language.scripts) for code, language in config.languages.items()},
                        perceptual_hash=config.decontaminate is not None)


def task_context(config: Config):
    """The task stage's context: the storage root as a URI every worker opens, and the stage's settings."""
    from tasks.stage import TaskStageContext

    storage = config.storage.open()
    return TaskStageContext(storage.root_uri(), config.storage.options, task_settings(config))


def build_tasks_stage(config: Config) -> dict[str, Any]:
    """Task-sample tables for every source the task stage builds; returns samples and drops per source."""
    from pipelines.runtime import ensure_ray
    from tasks.entry import TasksRun, run

    ensure_ray(config.ray.address, config.ray.num_cpus)
    _demo_files(config)
    ctx = task_context(config)
    return run(TasksRun(ctx.root, ctx.options, ctx.settings, sources=tuple(task_sources(config))))


def shard_directory(config: Config) -> str:
    """Where the final shards go: ``shards.directory``, else ``<storage.root>/shards``; a local
    path or an fsspec URI (``s3://bucket/run/shards``)."""
    if config.shards.directory:
        return config.shards.directory
    storage = config.storage.open()
    return storage.uri(storage.path("shards"))


def download_losses(config: Config) -> dict[str, dict[str, int]]:
    """Per dataset of a URL-list source, its URL rows that failed to download, by reason (from the
    download stage's per-source counters, one small file per source): the kept-share floor counts them
    as lost inputs. Rows the user's filters removed are a choice, not a loss, and are left out."""
    from download.stats import downloaded_stats
    from tasks.build import output_datasets

    failed = {stats.source: {f"download:{reason}": n for reason, n in stats.failed.items() if n}
              for stats in downloaded_stats(config.storage.open())}
    return {dataset: failed[source.name] for source in config.sources if failed.get(source.name)
            for dataset in output_datasets(source)}


def mix_settings(config: Config, upstream_losses: dict[str, dict[str, int]] | None = None):
    """The mixer's settings: the config's `mixture` as written, plus what the rest of the config says
    (task shares, per-source weights and floors, the seed), and ``upstream_losses`` (what the run's
    earlier stages lost per dataset, :func:`download_losses`); reads no storage."""
    from shards.mix import MixSettings
    from tasks.build import output_datasets

    floors = {dataset: source.min_kept_share for source in config.sources
              if source.min_kept_share is not None for dataset in output_datasets(source)}
    upstream = upstream_losses or {}
    if config.mixture.repeat_time is not None:  # InternVL's weighting: every task, the total from repeat times
        given = config.mixture.repeat_time  # a source's value holds for its translations unless they have their own
        repeat_time = {dataset: given.get(dataset, given.get(source.name)) for source in config.sources
                       for dataset in output_datasets(source) if dataset in given or source.name in given}
        return MixSettings(**{**config.mixture.model_dump(), "total_samples": None, "repeat_time": repeat_time},
                           seed=config.seed, shares={task: 1.0 for task in config.tasks}, min_kept_shares=floors,
                           upstream_losses=upstream,
                           decontaminated=config.decontaminate is not None)
    return MixSettings(**config.mixture.model_dump(), seed=config.seed, min_kept_shares=floors,
                       upstream_losses=upstream,
                       decontaminated=config.decontaminate is not None,
                       shares={task: spec.share for task, spec in config.tasks.items() if spec.share > 0},
                       weights={source.name: source.weight for source in config.sources if source.weight != 1.0})


def decontam_stage(config: Config) -> dict[str, Any]:
    """Near-duplicates across every task table and contamination by the evaluation sets: per task table,
    the samples the mix leaves out (``<root>/decontam``); the sources' order breaks ties of the keep rule."""
    from decontam.entry import DecontamRun, run
    from pipelines.runtime import ensure_ray

    if config.decontaminate is None:
        raise ValueError("decontaminate: the config has no `decontaminate` section")
    ensure_ray(config.ray.address, config.ray.num_cpus)  # the stage's passes run as Ray tasks
    storage = config.storage.open()
    return run(DecontamRun(storage.root_uri(), dict(storage.options), settings=config.decontaminate,
                           order=tuple(s.name for s in config.sources)))


def mix_stage(config: Config) -> dict[str, Any]:
    """Draw the mixture, write the shards and manifest, verify them; return the manifest's summary."""
    from flows.registry import stage_drops
    from pipelines.runtime import ensure_ray
    from shards.entry import MixRun, run
    from shards.location import options_for
    from shards.write import ShardSettings

    ensure_ray(config.ray.address, config.ray.num_cpus)  # the mixer's passes run as Ray tasks
    storage = config.storage.open()
    directory = shard_directory(config)
    shard_settings = ShardSettings(**config.shards.model_dump(exclude={"directory"}))
    return run(MixRun(storage.root_uri(), dict(storage.options), mix=mix_settings(config, download_losses(config)),
                      shards=shard_settings, out=directory, out_options=options_for(directory, storage),
                      config_hash=config.fingerprint(), stage_drops=stage_drops(storage)))


def train_stage(config: Config) -> dict[str, Any]:
    """Train from the mixture's shards with the config's `train` settings; first and last losses."""
    import json

    from pipelines._imports import require

    if config.train is None:
        raise ValueError("train: the config has no `train` section")
    cli = require("trainer.cli", "train")
    stage = config.train
    filled = {"shards": stage.shards or str(shard_directory(config))}
    if stage.launcher == "ray" and stage.ray_address is None and config.ray.address is not None:
        filled["ray_address"] = config.ray.address
    cli.run(cli.TrainSettings(**{**stage.model_dump(), **filled}))
    metrics = Path(config.train.out) / "metrics.jsonl"
    steps = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    losses = [s["loss"] for s in steps if "loss" in s]
    return {"out": config.train.out, "steps": len(losses),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
