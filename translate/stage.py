"""The translation stage on the one contract (:mod:`pipelines.stage`): one input part per unit.

Two shapes, the same units and outputs. :class:`TranslationActors` (vlmix runs the model, engine
``offline``): an actor pool, each actor holding one vLLM offline engine (``setup``) and translating
one part at a time with it, the part's distinct texts as one batch. :class:`TranslationParts`
(endpoints, configured or launched as servers): each unit is a Ray task that opens its own
client to the endpoints, reads its part, asks for the texts the persistent cache does not hold
(each distinct text once), validates the answers and writes the part's output for every target.
``max_in_flight`` (``TranslateSettings.workers``) units run at once, each with
``concurrency // workers`` requests in flight per endpoint, so the servers never see more than
``translation.concurrency`` in all. A part whose requests failed
(a server that went away) is reported as failed, not raised: the other parts are written, and
the caller decides (the flow retries the stage, which redoes only the failed parts).

>>> report = execute(TranslationParts(plan, settings), TranslateContext(...))  # doctest: +SKIP
>>> report.groups["coyo"].failed  # doctest: +SKIP
{'zh:00003': 'ServerUnavailable: ...'}
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from pipelines.languages import Language
from pipelines.stage import ActorStage, Counters, Pool, Stage, StageContext, Unit
from translate.client import ChatClient
from translate.settings import TranslateSettings
from translate.table import output_path, part_name
from translate.translator import Translator

COST_TALLIES = ("cost_rows", "cost_requests", "cost_prompt_tokens", "cost_completion_tokens")


@dataclass(frozen=True)
class TranslateContext(StageContext):
    """What every part needs; pickles small (settings models and plain values, no client)."""

    options: dict  # no default here: the fields after it have none either
    settings: TranslateSettings
    languages: dict[str, Language]
    endpoints: tuple[str, ...]
    client: dict = field(default_factory=dict)  # ChatClient keywords: model, concurrency, timeout_s, ...
    text_columns: tuple[str, ...] | None = None


class _Parts(Stage):
    """``<root>/translate/<source>/<target>/<part>.parquet`` for each input part and target."""

    name = "translate"
    unit_kind = "parts"

    def __init__(self, plan: dict[str, tuple[list[str], list[str]]], settings: TranslateSettings):
        self.plan = plan  # source -> (input part paths, targets)
        self.settings = settings

    def units(self, ctx):
        for source, (parts, targets) in self.plan.items():
            for path in parts:
                yield Unit(part_name(path), (path, tuple(targets)), group=source)

    def done(self, unit, ctx):
        storage = ctx.storage()
        _, targets = unit.spec
        return all(storage.exists(output_path(storage, unit.group, target, unit.name)) for target in targets)

    def _counters(self, unit: Unit, ctx: TranslateContext, client) -> Counters:
        path, targets = unit.spec
        counters = Counters(tallies={name: Counter() for name in ("parts_written", "parts_skipped", *COST_TALLIES)})
        try:
            reports = asyncio.run(_translate_part(ctx, client, unit.group, path, list(targets)))
        except Exception as err:  # an unreadable part: reported as this part's failure, the others go on
            for target in targets:
                counters.fail(f"{target}:{unit.name}", err)
            return counters
        for target, report in reports.items():
            counters.tallies["parts_written"][target] += report.parts_written
            counters.tallies["parts_skipped"][target] += report.parts_skipped
            for name in COST_TALLIES:  # what this part's requests cost (RunCost), per target
                counters.tallies[name][target] += getattr(report.cost, name.removeprefix("cost_"))
            counters.failed.update({f"{target}:{part}": error for part, error in report.failed.items()})
            counters.transient.update(f"{target}:{part}" for part in report.transient)
        return counters


class TranslationParts(_Parts):
    """Each part a Ray task sending requests to the endpoints (``TranslateSettings.workers`` at once)."""

    def __init__(self, plan: dict[str, tuple[list[str], list[str]]], settings: TranslateSettings):
        super().__init__(plan, settings)
        self.num_cpus = settings.cpus_per_worker
        self.max_in_flight = settings.workers

    def run_unit(self, unit, ctx):
        return self._counters(unit, ctx, lambda: ChatClient(list(ctx.endpoints), **ctx.client))


class TranslationActors(_Parts, ActorStage):
    """Each actor of ``engines`` (one per tensor-parallel group of GPUs, or one CPU engine) holds a
    vLLM offline engine and translates one part at a time with it. An engine that dies is started
    again by its actor, and the part it was on runs again (its finished targets are kept)."""

    def __init__(self, plan, settings: TranslateSettings, model: str, device: str, engines: int,
                 temperature: float = 0.0):
        super().__init__(plan, settings)
        self.model, self.device = model, device
        self.engines, self.temperature = engines, temperature

    def pool(self, ctx) -> Pool:
        vllm = self.settings.vllm
        gpus = vllm.tensor_parallel_size if self.device == "cuda" else 0
        return Pool(size=self.engines, num_cpus=vllm.cpus_per_server, num_gpus=gpus)

    def setup(self, ctx):
        from translate.engine import OfflineEngine

        engine = OfflineEngine(self.model, self.settings.vllm, self.device)
        engine.start()
        return engine

    def run_unit(self, unit, ctx, engine=None):
        from translate.engine import EngineClient, EngineDied

        restarted = 0
        if not engine.alive():  # it died during an earlier part: a new one for this part
            engine.start()
            restarted = 1
        client = EngineClient(engine, self.model, self.temperature)
        counters = self._counters(unit, ctx, lambda: client)
        if not engine.alive():  # it died during this part: the executor runs the part again
            raise EngineDied(f"vLLM's engine exited while translating {unit.group}/{unit.name}\n"
                             f"{engine.log_tail(10)}")
        counters.tallies["engine_restarts"] = Counter({"engines": restarted})
        counters.tallies["tokens"] = Counter({"prompt": client.prompt_tokens, "generated": client.completion_tokens})
        return counters


async def _translate_part(ctx: TranslateContext, client, source: str, path: str, targets: list[str]):
    async with client() as chat:
        translator = Translator(ctx.storage(), chat, ctx.languages, ctx.settings)
        columns = list(ctx.text_columns) if ctx.text_columns else None
        return await translator.translate_source(source, [path], targets, columns)
