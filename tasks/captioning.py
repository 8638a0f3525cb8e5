"""Captioning samples: the caption answers an instruction from the language's pool."""

from __future__ import annotations

import re
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


def render_description(texts: dict[str, str], language: str, prompts: PromptPools, identity: tuple[str, ...]):
    prompt = prompts.choose("describe", language, *identity)
    return [human_turn(prompt), {"from": "gpt", "value": texts["caption"]}]


def _paragraphs(text: str) -> str:
    """Spaces collapsed within each line; line breaks kept, at most one blank line between paragraphs."""
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def caption_drafts(storage: Storage, source: str, shard: str, images, drops: Counter,
                   detailed: bool = False) -> Iterator[Draft]:
    """Drafts from one raw img2dataset shard; captionless or undecodable samples are counted out.
    ``detailed``: long descriptions (Laion-GPT4V) keep their paragraphs and answer a request for detail."""
    for raw in iter_raw_shard(storage, source, shard):
        caption = _paragraphs(raw.caption) if detailed else " ".join(raw.caption.split())
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
            render=render_description if detailed else render_caption,
            url=str(raw.meta.get("url") or ""),
        )
