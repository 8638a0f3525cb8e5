"""The translation stage on the one contract (:mod:`pipelines.stage`): one input part per unit.

Each unit is a Ray task that opens its own client to the endpoints, reads its part, asks for
the texts the persistent cache does not hold (each distinct text once), validates the answers
and writes the part's output for every target. ``max_in_flight`` (``TranslateSettings.workers``)
units run at once, each with ``concurrency // workers`` requests in flight per endpoint, so the
servers never see more than ``translation.concurrency`` in all. A part whose requests failed
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
from pipelines.stage import Counters, Stage, Unit
from pipelines.storage import Storage
from translate.client import ChatClient
from translate.settings import TranslateSettings
from translate.stage import Translator
from translate.table import output_path, part_name


@dataclass(frozen=True)
class TranslateContext:
    """What every part needs; pickles small (settings models and plain values, no client)."""

    root: str
    options: dict
    settings: TranslateSettings
    languages: dict[str, Language]
    endpoints: tuple[str, ...]
    client: dict = field(default_factory=dict)  # ChatClient keywords: model, concurrency, timeout_s, ...
    text_columns: tuple[str, ...] | None = None

    def storage(self) -> Storage:
        return Storage(self.root, self.options)


class TranslationParts(Stage):
    """``<root>/translate/<source>/<target>/<part>.parquet`` for each input part and target."""

    name = "translate"
    unit_kind = "parts"

    def __init__(self, plan: dict[str, tuple[list[str], list[str]]], settings: TranslateSettings):
        self.plan = plan  # source -> (input part paths, targets)
        self.num_cpus = settings.cpus_per_worker
        self.max_in_flight = settings.workers

    def units(self, ctx):
        for source, (parts, targets) in self.plan.items():
            for path in parts:
                yield Unit(part_name(path), (path, tuple(targets)), group=source)

    def done(self, unit, ctx):
        storage = ctx.storage()
        _, targets = unit.spec
        return all(storage.exists(output_path(storage, unit.group, target, unit.name)) for target in targets)

    def run_unit(self, unit, ctx):
        path, targets = unit.spec
        counters = Counters(tallies={"parts_written": Counter(), "parts_skipped": Counter()})
        try:
            reports = asyncio.run(_translate_part(ctx, unit.group, path, list(targets)))
        except Exception as err:  # an unreadable part: reported as this part's failure, the others go on
            lines = str(err).strip().splitlines()
            message = f"{type(err).__name__}: {lines[-1] if lines else ''}"
            counters.failed.update({f"{target}:{unit.name}": message for target in targets})
            return counters
        for target, report in reports.items():
            counters.tallies["parts_written"][target] += report.parts_written
            counters.tallies["parts_skipped"][target] += report.parts_skipped
            counters.failed.update({f"{target}:{part}": error for part, error in report.failed.items()})
        return counters


async def _translate_part(ctx: TranslateContext, source: str, path: str, targets: list[str]):
    async with ChatClient(list(ctx.endpoints), **ctx.client) as client:
        translator = Translator(ctx.storage(), client, ctx.languages, ctx.settings)
        columns = list(ctx.text_columns) if ctx.text_columns else None
        return await translator.translate_source(source, [path], targets, columns)
