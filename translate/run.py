"""Running the translation stage over a selection of input parts: on vLLM offline engines in Ray
actors, from Ray tasks that send requests to endpoints (given, or vLLM servers started for the run),
or in this process when Ray is not up; a report per source and target.

What to translate (sources, their parts and targets) is the application's choice, made from the
mixture config (``flows.translation.select_parts``); this module takes that selection as ``plan``:
source -> (input parts, targets).

>>> reports = translate_parts(storage, plan, config.translation.stage, config.translation,
...                           config.languages, ray_address=None)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from pipelines.storage import Storage
from translate.client import ChatClient, client_options
from translate.launch import launched_servers
from translate.settings import ClientSettings, TranslateSettings
from translate.translator import TargetReport, Translator, summarise

log = logging.getLogger(__name__)

Plan = dict[str, tuple[list[str], list[str]]]
Reports = dict[str, dict[str, TargetReport]]


@dataclass(frozen=True)
class _Run:
    storage: Storage
    plan: Plan
    settings: TranslateSettings
    client: ClientSettings
    languages: dict[str, Any]
    text_columns: tuple[str, ...] | None


def translate_parts(storage: Storage, plan: Plan, settings: TranslateSettings, client: ClientSettings,
                    languages: dict[str, Any], endpoints: list[str] | None = None, ray_address: str | None = None,
                    num_cpus: int | None = None, text_columns: list[str] | None = None) -> Reports:
    """Translate ``plan``'s parts into their targets; source -> target -> report.

    With no endpoint, vlmix runs ``client.model`` on the Ray cluster itself: vLLM's offline engine in
    an actor pool (``settings.vllm.engine`` ``offline``, the default), or OpenAI servers started for
    the run and stopped afterwards (``server``). ``ray_address`` and ``num_cpus`` say which Ray to
    start for the engines when none is up."""
    endpoints = list(endpoints or [])
    if not endpoints and not client.model:
        raise ValueError("no endpoint configured, and no translation.model for vlmix to run")
    run = _Run(storage, plan, settings, client, dict(languages), tuple(text_columns) if text_columns else None)
    if not endpoints and settings.vllm.engine == "offline":
        return _on_engines(run, ray_address, num_cpus)
    with contextlib.ExitStack() as stack:
        api_key = None  # the key of the servers vlmix starts; configured endpoints' come from api_key_env
        if not endpoints:
            fleet = stack.enter_context(launched_servers(client.model, settings.vllm, ray_address))
            endpoints, api_key = fleet.urls, fleet.api_key
        if _ray_is_up():
            return _on_workers(run, endpoints, api_key)
        return asyncio.run(_here(run, endpoints, api_key=api_key))


def _ray_is_up() -> bool:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return False
    import ray

    return ray.is_initialized()


def _on_engines(run: _Run, ray_address: str | None, num_cpus: int | None) -> Reports:
    """Parts on an actor pool of vLLM offline engines (:class:`translate.stage.TranslationActors`):
    one engine per tensor-parallel group of the cluster's GPUs (or ``vllm.servers`` of them, or one
    on CPU), each translating one part at a time, its distinct texts as one batch."""
    import ray

    from pipelines.runtime import ensure_ray
    from pipelines.stage import execute
    from translate.launch import plan_servers
    from translate.stage import TranslateContext, TranslationActors

    ensure_ray(ray_address, num_cpus)
    device, engines = plan_servers(run.settings.vllm, ray.cluster_resources().get("GPU", 0))
    log.info("translating on %d vLLM offline engine(s) on %s for %s", engines, device, run.client.model)
    ctx = TranslateContext(run.storage.root_uri(), run.storage.options, run.settings, run.languages, (), {},
                           run.text_columns)
    stage = TranslationActors(run.plan, run.settings, run.client.model, device, engines, run.client.temperature)
    started = time.monotonic()
    return _reports(run, execute(stage, ctx), time.monotonic() - started)


def _on_workers(run: _Run, endpoints: list[str], api_key: str | None = None) -> Reports:
    """The requests go out from Ray tasks, one input part each (:class:`translate.stage.TranslationParts`
    through the one executor): ``settings.workers`` parts at once, ``client.concurrency // workers``
    requests in flight per endpoint each (so never more than configured in all). Within a part,
    identical texts are asked once; between parts the persistent cache carries answers. A task whose
    process dies runs again (its finished targets are skipped); a part whose requests failed is
    reported failed, and the other parts are written and reported."""
    from pipelines.stage import execute
    from translate.budget import shared_budget
    from translate.stage import TranslateContext, TranslationParts

    c = run.client
    workers = max(1, min(run.settings.workers, c.concurrency))
    # Each worker reads api_key_env's variable itself: no key travels in the context.
    client = client_options(c, run.settings, concurrency=max(1, c.concurrency // workers), api_key=api_key)
    # The run's token and request budgets: one window in a Ray actor that every worker's client asks.
    with shared_budget(c.max_tokens_per_minute, c.max_requests_per_minute) as budget:
        client["rate_budget"] = budget
        ctx = TranslateContext(run.storage.root_uri(), run.storage.options, run.settings, run.languages,
                               tuple(endpoints), client, run.text_columns)
        stage = TranslationParts(run.plan, run.settings.model_copy(update={"workers": workers}))
        started = time.monotonic()
        report = execute(stage, ctx)
    return _reports(run, report, time.monotonic() - started)


def _reports(run: _Run, report, seconds: float) -> Reports:
    """The executor's counters as a report per source and target (stats over every finished part)."""
    from translate.stage import COST_TALLIES

    reports: Reports = {name: {target: TargetReport(name, target) for target in targets}
                        for name, (_, targets) in run.plan.items()}
    for name, (parts, targets) in run.plan.items():
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
            merged.stats = summarise(run.storage, name, target, merged.cost)
    return reports


async def _here(run: _Run, endpoints: list[str], api_key: str | None = None) -> Reports:
    """In this process (Ray is not up): one client, the sources one after the other."""
    client = ChatClient(endpoints, **client_options(run.client, run.settings, api_key=api_key))
    reports = {}
    async with client:
        translator = Translator(run.storage, client, run.languages, run.settings)
        for name, (parts, targets) in run.plan.items():
            log.info("translating %s (%d parts) into %s", name, len(parts), ", ".join(targets))
            reports[name] = await translator.translate_source(name, parts, targets, run.text_columns)
    return reports


def report_lines(reports: Reports) -> list[str]:
    """What a run did, a few lines per source and target, for a terminal."""
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
                what = {"encoder": "encoder cosine", "back_translation": "back-translation chrF"}.get(
                    s.quality_method or "back_translation", s.quality_method)
                mean = f"{s.quality_sum / s.scored:.{3 if s.quality_method == 'encoder' else 1}f}"
                lines.append(f"    quality ({what}): mean {mean} over {s.scored} scored rows; "
                             f"{s.flagged.get('low_quality', 0)} below min_quality")
            cost = report.cost.to_json()
            if cost["requests"]:
                per = cost["tokens_per_request"]
                lines.append(f"    this run: {cost['prompt_tokens']} prompt + {cost['completion_tokens']} completion "
                             f"tokens for {cost['requests']} requests ({per['prompt']} + {per['completion']} a request), "
                             f"{cost['tokens_per_s']} tokens/s over {cost['seconds']:.1f} s")
            lines += [f"    failed part {part}: {error}" for part, error in sorted(report.failed.items())]
    return lines
