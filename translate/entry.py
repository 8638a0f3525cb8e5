"""The translation stage's one entry: :func:`run` over a :class:`TranslateRun`, as the flow's
registry calls it: the chosen input parts of each source into its targets (:func:`translate.run.translate_parts`:
offline engines, request workers or launched servers); per source and target, a report.

>>> run(TranslateRun("/data/mix", settings=TranslateSettings(), client=ClientSettings(model="Qwen/Qwen2-7B"),
...                  languages=languages, plan={"coyo": (parts, ["zh"])}))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.stage import StageContext
from translate.settings import ClientSettings, TranslateSettings


@dataclass(frozen=True)
class TranslateRun(StageContext):
    """What the stage runs on: the root, its settings and the client's, the languages (code -> the
    registry's entry), ``plan`` (source -> (input parts, targets)), the endpoints (none: vlmix runs
    the model itself, on the Ray of ``ray_address``/``num_cpus``), the text columns to read."""

    settings: TranslateSettings = field(default_factory=TranslateSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    languages: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()
    ray_address: str | None = None
    num_cpus: int | None = None
    text_columns: tuple[str, ...] | None = None


def run(ctx: TranslateRun):
    """Translate ``ctx.plan``; source -> target -> :class:`translate.stats.TargetReport`."""
    from translate.run import translate_parts

    return translate_parts(ctx.storage(), ctx.plan, ctx.settings, ctx.client, ctx.languages, list(ctx.endpoints),
                           ctx.ray_address, ctx.num_cpus, list(ctx.text_columns) if ctx.text_columns else None)
