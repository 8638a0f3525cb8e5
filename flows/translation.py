"""Running the stage from a mixture config: which parts, which targets, which servers.

Inputs of a source, first found wins:

1. the paths given (``--input``);
2. ``<root>/translate/<source>/_input/*.parquet``: texts another stage extracted (long or wide, see
   :mod:`translate.table`), e.g. detection names and referring expressions from the task drafts;
3. the source's complete raw img2dataset shards (``<root>/raw/<source>/NNNNN.parquet``): captions.

Targets of a source: its ``translate_to``, restricted to ``translation.targets`` when that list is
not empty (so a run can produce one language at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from flows.config import Config, Source
from pipelines.storage import Storage
from translate.client import ChatClient, client_options
from translate.launch import launched_servers
from translate.settings import TranslateSettings
from translate.table import TRANSLATE_DIR
from translate.translator import TargetReport, Translator, summarise

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

    With no endpoint (argument or ``translation.endpoints``), vlmix runs ``translation.model`` on the
    Ray cluster itself: vLLM's offline engine in an actor pool (``translation.stage.vllm.engine``
    ``offline``, the default), or OpenAI servers started for the run and stopped afterwards
    (``server``).
    """
    settings = settings or TranslateSettings()
    storage = config.storage.open()
    plan = select_parts(config, storage, sources, inputs, targets)
    endpoints = list(endpoints or config.translation.endpoints)
    if not endpoints and not config.translation.model:
        raise NothingToTranslate("no endpoint configured, and no translation.model for vlmix to run")
    if not endpoints and settings.vllm.engine == "offline":
        return _translate_on_engines(config, settings, storage, plan, text_columns)
    with contextlib.ExitStack() as stack:
        api_key = None  # the key of the servers vlmix starts; configured endpoints' come from api_key_env
        if not endpoints:
            fleet = stack.enter_context(
                launched_servers(config.translation.model, settings.vllm, config.ray.address)
            )
            endpoints, api_key = fleet.urls, fleet.api_key
        if _ray_is_up():
            return _translate_on_workers(config, settings, storage, endpoints, plan, text_columns, api_key)
        return asyncio.run(_translate(config, settings, storage, endpoints, plan, text_columns, api_key=api_key))


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


def _ray_is_up() -> bool:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return False
    import ray

    return ray.is_initialized()


def _translate_on_engines(config, settings, storage, plan, text_columns):
    """Parts on an actor pool of vLLM offline engines (:class:`translate.stage.TranslationActors`):
    one engine per tensor-parallel group of the cluster's GPUs (or ``vllm.servers`` of them, or one
    on CPU), each translating one part at a time, its distinct texts as one batch."""
    import ray

    from pipelines.runtime import ensure_ray
    from pipelines.stage import execute
    from translate.launch import plan_servers
    from translate.stage import TranslateContext, TranslationActors

    ensure_ray(config.ray.address, config.ray.num_cpus)
    device, engines = plan_servers(settings.vllm, ray.cluster_resources().get("GPU", 0))
    log.info("translating on %d vLLM offline engine(s) on %s for %s", engines, device, config.translation.model)
    ctx = TranslateContext(storage.root_uri(), storage.options, settings, dict(config.languages), (),
                           {}, tuple(text_columns) if text_columns else None)
    stage = TranslationActors(plan, settings, config.translation.model, device, engines,
                              config.translation.temperature)
    started = time.monotonic()
    return _reports(storage, plan, execute(stage, ctx), time.monotonic() - started)


def _translate_on_workers(config, settings, storage, endpoints, plan, text_columns, api_key=None):
    """The requests go out from Ray tasks, one input part each (:class:`translate.stage.TranslationParts`
    through the one executor): ``settings.workers`` parts at once, ``translation.concurrency // workers``
    requests in flight per endpoint each (so never more than configured in all). Within a part,
    identical texts are asked once; between parts the persistent cache carries answers. A task whose
    process dies runs again (its finished targets are skipped); a part whose requests failed is
    reported failed, and the other parts are written and reported."""
    from pipelines.stage import execute
    from translate.budget import shared_budget
    from translate.stage import TranslateContext, TranslationParts

    t = config.translation
    workers = max(1, min(settings.workers, t.concurrency))
    # Each worker reads api_key_env's variable itself: no key travels in the context.
    client = client_options(t, settings, concurrency=max(1, t.concurrency // workers), api_key=api_key)
    # The run's token and request budgets: one window in a Ray actor that every worker's client asks.
    with shared_budget(t.max_tokens_per_minute, t.max_requests_per_minute) as budget:
        client["rate_budget"] = budget
        ctx = TranslateContext(storage.root_uri(), storage.options, settings, dict(config.languages),
                               tuple(endpoints), client, tuple(text_columns) if text_columns else None)
        stage = TranslationParts(plan, settings.model_copy(update={"workers": workers}))
        started = time.monotonic()
        report = execute(stage, ctx)
    return _reports(storage, plan, report, time.monotonic() - started)


def _reports(storage, plan, report, seconds: float) -> dict[str, dict[str, TargetReport]]:
    """The executor's counters as a report per source and target (stats over every finished part)."""
    from translate.stage import COST_TALLIES

    reports: dict[str, dict[str, TargetReport]] = {
        name: {target: TargetReport(name, target) for target in targets} for name, (_, targets) in plan.items()}
    for name, (parts, targets) in plan.items():
        counters = report.groups.get(name)
        for target in targets:
            merged = reports[name][target]
            if counters is not None:
                merged.parts_written = counters.tallies.get("parts_written", {}).get(target, 0)
                merged.parts_skipped = counters.tallies.get("parts_skipped", {}).get(target, 0)
                merged.failed = {key.split(":", 1)[1]: error for key, error in counters.failed.items()
                                 if key.split(":", 1)[0] == target}
                merged.transient = {key.split(":", 1)[1] for key in counters.transient
                                    if key.split(":", 1)[0] == target}
                for tally in COST_TALLIES:
                    setattr(merged.cost, tally.removeprefix("cost_"), counters.tallies.get(tally, {}).get(target, 0))
            # Parts the executor skipped were finished for every target before this run.
            merged.parts_skipped += len(parts) - merged.parts_written - merged.parts_skipped - len(merged.failed)
            merged.cost.seconds = seconds
            # Over every finished part, whichever task wrote it, with this run's cost.
            merged.stats = summarise(storage, name, target, merged.cost)
    return reports


async def _translate(config, settings, storage, endpoints, plan, text_columns, concurrency=None, api_key=None):
    t = config.translation
    client = ChatClient(endpoints, **client_options(t, settings, concurrency=concurrency, api_key=api_key))
    reports = {}
    async with client:
        translator = Translator(storage, client, config.languages, settings)
        for name, (parts, targets) in plan.items():
            log.info("translating %s (%d parts) into %s", name, len(parts), ", ".join(targets))
            reports[name] = await translator.translate_source(name, parts, targets, text_columns)
    return reports


def report_lines(reports: dict[str, dict[str, TargetReport]]) -> list[str]:
    lines = []
    for source, by_target in reports.items():
        for target, report in by_target.items():
            s = report.stats
            flagged = ", ".join(f"{k} {v}" for k, v in sorted(s.flagged.items())) or "none"
            lines.append(
                f"{source:24s} -> {target:4s} {s.translated:7d}/{s.rows:<7d} translated; flagged: {flagged}; "
                f"parts {report.parts_written} written, {report.parts_skipped} already done, "
                f"{len(report.failed)} failed; requests {s.requests}, cache {s.from_cache}, "
                f"deduplicated {s.deduplicated}"
                + (f"; cleaned up: {', '.join(f'{k} {v}' for k, v in sorted(s.cleaned.items()))}" if s.cleaned else "")
            )
            if s.scored:
                lines.append(f"    quality (back-translation chrF): mean {s.quality_sum / s.scored:.1f} over "
                             f"{s.scored} scored rows; {s.flagged.get('low_quality', 0)} below min_quality")
            cost = report.cost.to_json()
            if cost["requests"]:
                per = cost["tokens_per_request"]
                lines.append(f"    this run: {cost['prompt_tokens']} prompt + {cost['completion_tokens']} completion "
                             f"tokens for {cost['requests']} requests ({per['prompt']} + {per['completion']} a request), "
                             f"{cost['tokens_per_s']} tokens/s over {cost['seconds']:.1f} s")
            lines += [f"    failed part {part}: {error}" for part, error in sorted(report.failed.items())]
    return lines
