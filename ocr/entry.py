"""The OCR stage's one entry: :func:`run` over an :class:`OcrRun`, as the flow's registry calls it.

For each input, either PP-OCR over its raw shards (Ray actors, :func:`ocr.stage.run_ocr_stage`)
then its OCR task tables (:func:`ocr.tasks.write_ocr_task_tables`), or, for a URL list whose
caption is the exact text of the image (SynthDoG-style), transcription samples from the captions
(:class:`ocr.captions.CaptionTranscriptions`, one Ray task per raw shard). Which sources are which
is the application's to say (it knows the source kinds); this package only runs them.

>>> run(OcrRun("/data/mix", engine=OcrSettings(concurrency=4), style=OcrTaskStyle(),
...            sources=(OcrInput("wukong", "wukong", "ocr_large", "zh", "zh"),)))  # doctest: +SKIP
{'wukong': {'kept': 9811, 'dropped': {'no_text': 1203, ...}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ocr.settings import OcrSettings
from ocr.tasks import OcrTaskStyle
from pipelines.stage import StageContext


@dataclass(frozen=True)
class OcrInput:
    """One source of the stage: ``name`` its dataset, ``raw`` the raw folder its images are in,
    ``language`` the source's (``auto``: each image's own, by script), ``ocr_language`` the language
    the engine's results are labelled with where the script says nothing; None: no OCR, the
    caption is the image's exact text (transcription samples from the captions)."""

    name: str
    raw: str
    task: str
    language: str
    ocr_language: str | None


@dataclass(frozen=True)
class OcrRun(StageContext):
    """What the OCR stage runs on: the root, the engine's settings, the task samples' style, seed and
    instruction pools (``prompts``: purpose -> language -> prompts, for the OCR task tables;
    ``transcribe_prompts``: language -> prompts, for transcriptions from captions), the registry's
    scripts per language."""

    engine: OcrSettings = field(default_factory=OcrSettings)
    style: OcrTaskStyle = field(default_factory=OcrTaskStyle)
    seed: int = 0
    prompts: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    transcribe_prompts: dict[str, list[str]] = field(default_factory=dict)
    scripts: dict[str, list[str]] = field(default_factory=dict)
    sources: tuple[OcrInput, ...] = ()
    perceptual_hash: bool = False  # each image's hashes where the OCR actor decodes it (a run that decontaminates)


def run(ctx: OcrRun) -> dict[str, Any]:
    """OCR every input (resumable per shard) and write its task tables; per source, kept and dropped."""
    from ocr.stage import run_ocr_stage
    from ocr.tasks import OcrTaskSettings, write_ocr_task_tables

    summary: dict[str, Any] = {}
    for source in ctx.sources:
        if source.ocr_language is None:
            summary[source.name] = _transcriptions(ctx, source)
            continue
        scripts = None
        if source.language == "auto":  # PDF pages: each in the language its text is written in, by script
            scripts = {"en": ["Latin"], **ctx.scripts}
        stats = run_ocr_stage(ctx.root, source.raw, source.ocr_language, ctx.engine,
                              storage_options=ctx.options, scripts=scripts, perceptual_hash=ctx.perceptual_hash)
        settings = OcrTaskSettings(**ctx.style.model_dump(), task=source.task, seed=ctx.seed, prompts=ctx.prompts)
        write_ocr_task_tables(ctx.root, source.raw, source.name, settings, storage_options=ctx.options,
                              perceptual_hash=ctx.perceptual_hash)
        summary[source.name] = {"kept": stats.get("kept"), "dropped": stats.get("dropped", {})}
    return summary


def _transcriptions(ctx: OcrRun, source: OcrInput) -> dict[str, Any]:
    from ocr.captions import CaptionTranscriptions, TranscriptionContext
    from pipelines.stage import execute

    languages = sorted({source.language} if source.language != "auto" else {*ctx.scripts, "en"})
    tctx = TranscriptionContext(ctx.root, ctx.options, seed=ctx.seed,
                                prompts={code: ctx.transcribe_prompts[code] for code in languages},
                                scripts=dict(ctx.scripts), perceptual_hash=ctx.perceptual_hash)
    report = execute(CaptionTranscriptions(source.name, source.raw, source.task, source.language), tctx)
    return {"kept": report.counters.samples, "dropped": dict(sorted(report.counters.drops.items()))}
