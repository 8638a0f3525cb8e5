"""What the translation stage runs on, from a mixture config: which sources, parts and targets
(the run itself is :mod:`translate.run`).

Inputs of a source, first found wins:

1. the paths given (``--input``);
2. ``<root>/translate/<source>/_input/*.parquet``: texts another stage extracted (long or wide, see
   :mod:`translate.table`), e.g. detection names and referring expressions from the task drafts;
3. the source's complete raw img2dataset shards (``<root>/raw/<source>/NNNNN.parquet``): captions.

Targets of a source: its ``translate_to``, restricted to ``translation.targets`` when that list is
not empty (so a run can produce one language at a time).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flows.config import Config, Source
from pipelines.storage import Storage
from translate.settings import TranslateSettings
from translate.table import TRANSLATE_DIR
from translate.translator import TargetReport

if TYPE_CHECKING:
    from translate.plan import TargetPlan

log = logging.getLogger(__name__)


class NothingToTranslate(ValueError):
    """The selection names no source with targets, or a source has no input."""


def source_targets(config: Config, source: Source) -> list[str]:
    wanted = config.translation.targets
    return [code for code in source.translate_to if not wanted or code in wanted]


def input_parts(storage: Storage, source: Source) -> list[str]:
    """The input parts of ``source`` (see the module docstring); raises if there are none."""
    extracted = storage.glob(storage.path(TRANSLATE_DIR, source.name, "_input", "*.parquet"))
    if extracted:
        return extracted
    raw = source.images_from or source.name
    shards = storage.glob(storage.path("raw", raw, "[0-9]*.parquet"))
    complete = [p for p in shards if storage.exists(p[: -len(".parquet")] + "_stats.json")]
    if complete:
        return complete
    raise NothingToTranslate(
        f"source {source.name!r} has no input: put Parquet parts (key, field, text) under "
        f"{storage.path(TRANSLATE_DIR, source.name, '_input')}/ or download the source first "
        f"(raw shards under {storage.path('raw', raw)}/)"
    )


def select_parts(config: Config, storage: Storage, sources: list[str] | None = None,
                 inputs: list[str] | None = None, targets: list[str] | None = None,
                 ) -> dict[str, tuple[list[str], list[str]]]:
    """What a run translates: source -> (input parts, targets); raises :class:`NothingToTranslate`."""
    chosen = [config.source(name) for name in sources] if sources else list(config.sources)
    plan: dict[str, tuple[list[str], list[str]]] = {}
    for source in chosen:
        wanted = targets or source_targets(config, source)
        if not wanted:
            if sources:
                raise NothingToTranslate(f"source {source.name!r} has no target (translate_to / --target)")
            continue
        if inputs and len(chosen) > 1:
            raise NothingToTranslate("explicit inputs need exactly one source")
        parts = (
            [p for pattern in inputs for p in storage.glob(pattern)]
            if inputs
            else input_parts(storage, source)
        )
        if not parts:
            raise NothingToTranslate(f"no input file matches {inputs}")
        plan[source.name] = (parts, wanted)
    if not plan:
        raise NothingToTranslate("no selected source has translation targets")
    unknown = sorted({t for _, ts in plan.values() for t in ts} - set(config.languages))
    if unknown:
        raise NothingToTranslate(f"targets {unknown} are not in the config's `languages`")

    return plan


def run_translation(
    config: Config,
    settings: TranslateSettings | None = None,
    sources: list[str] | None = None,
    endpoints: list[str] | None = None,
    inputs: list[str] | None = None,
    targets: list[str] | None = None,
    text_columns: list[str] | None = None,
) -> dict[str, dict[str, TargetReport]]:
    """Translate the selected sources (default: every source with targets); source -> target -> report.

    The selection comes from the config (:func:`select_parts`); the run is the translation package's
    (:func:`translate.entry.run`): with no endpoint (argument or ``translation.endpoints``),
    vlmix runs ``translation.model`` on the Ray cluster itself.
    """
    from translate.entry import TranslateRun, run

    settings = settings or TranslateSettings()
    storage = config.storage.open()
    plan = select_parts(config, storage, sources, inputs, targets)
    endpoints = list(endpoints or config.translation.endpoints)
    if not endpoints and not config.translation.model:
        raise NothingToTranslate("no endpoint configured, and no translation.model for vlmix to run")
    return run(TranslateRun(storage.root_uri(), dict(storage.options), settings=settings, client=config.translation,
                            languages=dict(config.languages), plan=plan, endpoints=tuple(endpoints),
                            ray_address=config.ray.address, num_cpus=config.ray.num_cpus,
                            text_columns=tuple(text_columns) if text_columns else None))


def plan_translation(
    config: Config,
    settings: TranslateSettings | None = None,
    sources: list[str] | None = None,
    endpoints: list[str] | None = None,
    inputs: list[str] | None = None,
    targets: list[str] | None = None,
    text_columns: list[str] | None = None,
    tokenizer: str | None = None,
) -> tuple[dict[str, TargetPlan], str]:
    """What :func:`run_translation` with the same arguments would ask, before any request
    (:mod:`translate.plan`): target -> its plan, and how the tokens were counted. Ray tasks do the
    counting where Ray is up (``vlmix translate --plan`` starts it as a run would)."""
    from translate.plan import PlanContext, make_plan, scratch_folder, tokenizer_folder

    settings = settings or TranslateSettings()
    storage = config.storage.open()
    plan = select_parts(config, storage, sources, inputs, targets)
    model = config.translation.model
    folder = tokenizer_folder(tokenizer or model)
    if tokenizer and folder is None:
        raise NothingToTranslate(f"--tokenizer {tokenizer}: not a local folder with tokenizer.json or tokenizer_config.json")
    # The context vLLM is given where vlmix runs it; an endpoint's own is known only once asked.
    context = None if (endpoints or config.translation.endpoints) else settings.vllm.max_model_len
    parts = sum(len(p) for p, _ in plan.values())
    ctx = PlanContext(storage.root_uri(), storage.options, settings=settings, languages=dict(config.languages),
                      scratch=scratch_folder(storage, config.storage.root), buckets=max(1, min(64, parts)),
                      piece_chars=settings.piece_chars(context), tokenizer=folder, model=model,
                      text_columns=tuple(text_columns) if text_columns else None)
    how = (f"tokens counted with the tokenizer in {folder}" if folder else
           "tokens estimated (no local tokenizer: translation.model is not a model folder; give --tokenizer DIR)")
    if not settings.cache:
        how += "; the cache is off"
    elif not model:
        how += "; the cache not consulted (translation.model not set: the endpoint names the model)"
    return make_plan(plan, ctx), how


def plan_lines(plans: dict[str, TargetPlan], how: str) -> list[str]:
    lines = [f"{'target':6s} {'texts':>9s} {'distinct':>9s} {'to ask':>9s} {'prompt tokens':>14s} "
             f"{'answer tokens':>14s} {'answer at most':>15s}"]
    for target, p in sorted(plans.items()):
        lines.append(f"{target:6s} {p.texts:9d} {p.distinct:9d} {p.uncached:9d} {p.prompt_tokens:14d} "
                     f"{p.answer_tokens:14d} {p.answer_budget:15d}")
    lines.append(f"({how}; 'to ask' = distinct texts the cache does not hold; answer tokens expected as many as "
                 "the English text's, at most the token budget)")
    return lines
