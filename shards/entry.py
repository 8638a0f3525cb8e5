"""The mix stage's one entry: :func:`run` over a :class:`MixRun`, as the flow's registry calls it:
draw the mixture from the task tables, write the shards and manifest (:func:`shards.write.mix_and_write`),
verify them (:func:`shards.verify.verify`); the manifest's summary.

>>> run(MixRun("/data/mix", mix=MixSettings(...), shards=ShardSettings(), out="s3://bucket/shards"))  # doctest: +SKIP
{'directory': 's3://bucket/shards', 'samples': 1000000, 'shards': 100, 'tasks': {...}, ...}
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from pipelines.stage import StageContext
from shards.mix import MixSettings
from shards.write import ShardSettings


@dataclass(frozen=True)
class MixRun(StageContext):
    """What the stage runs on: the root with the task tables, the mixture's and the shards' settings,
    where the shards go (``out``, with ``out_options``), the config hash and every earlier stage's
    drops for the manifest."""

    mix: MixSettings | None = None
    shards: ShardSettings = field(default_factory=ShardSettings)
    out: str = ""
    out_options: dict = field(default_factory=dict)
    config_hash: str | None = None
    stage_drops: dict[str, Any] = field(default_factory=dict)


def run(ctx: MixRun) -> dict[str, Any]:
    """Mix, write and verify; raises when the written shards fail verification."""
    from pipelines.storage import Storage
    from shards.verify import verify
    from shards.write import mix_and_write

    if ctx.mix is None:
        raise ValueError("MixRun.mix: the mixture's settings are required")
    out = Storage(ctx.out, ctx.out_options)
    manifest = mix_and_write(ctx.storage(), out, ctx.mix, ctx.shards, config_hash=ctx.config_hash,
                             stage_drops=ctx.stage_drops)
    checked = verify(out)
    if checked.problems:
        raise RuntimeError(f"the shards in {ctx.out} fail verification:\n" + "\n".join(checked.problems))
    return {
        "directory": ctx.out,
        "manifest": posixpath.join(ctx.out, "manifest.json"),
        "samples": sum(shard["samples"] for shard in manifest["shards"]),
        "shards": len(manifest["shards"]),
        "tasks": manifest["tasks"],
        "languages": manifest.get("languages", {}),
    }
