"""Captioning samples: the caption answers an instruction from the language's pool."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from pipelines.layout.raw import iter_raw_shard, raw_picture
from pipelines.layout.task_table import human_turn
from pipelines.storage import Storage
from tasks.draft import Draft
from tasks.prompts import PromptPools


def render_caption(texts: dict[str, str], language: str, prompts: PromptPools, identity: tuple[str, ...]):
    prompt = prompts.choose("caption", language, *identity)
    return [human_turn(prompt), {"from": "gpt", "value": texts["caption"]}]


def caption_drafts(storage: Storage, source: str, shard: str, images, drops: Counter) -> Iterator[Draft]:
    """Drafts from one raw img2dataset shard; captionless or undecodable samples are counted out."""
    for raw in iter_raw_shard(storage, source, shard):
        caption = " ".join(raw.caption.split())
        if not caption:
            drops["empty_caption"] += 1
            continue
        picture = raw_picture(storage, raw, images, drops)
        if picture is None:
            continue
        yield Draft(
            key=raw.key,
            images=[picture],
            texts={"caption": caption},
            render=render_caption,
            url=str(raw.meta.get("url") or ""),
        )
