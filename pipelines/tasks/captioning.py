"""Captioning samples: the caption answers an instruction from the language's pool."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from pipelines.storage import Storage
from pipelines.tasks.draft import Draft
from pipelines.tasks.prompts import PromptPools
from pipelines.tasks.raw import iter_raw_shard, sha256_and_size
from pipelines.tasks.table import human_turn


def render_caption(texts: dict[str, str], language: str, prompts: PromptPools, identity: tuple[str, ...]):
    prompt = prompts.choose("caption", language, *identity)
    return [human_turn(prompt), {"from": "gpt", "value": texts["caption"]}]


def caption_drafts(storage: Storage, source: str, shard: str, drops: Counter) -> Iterator[Draft]:
    """Drafts from one raw img2dataset shard; captionless or non-JPEG/PNG samples are counted out."""
    for raw in iter_raw_shard(storage, source, shard):
        caption = " ".join(raw.caption.split())
        if not caption:
            drops["empty_caption"] += 1
            continue
        if raw.image_format not in ("jpg", "png"):
            drops[f"image_format_{raw.image_format}"] += 1
            continue
        sha, width, height = sha256_and_size(storage, raw)
        yield Draft(
            key=raw.key,
            image=raw.image,
            image_format=raw.image_format,
            image_sha256=sha,
            width=width,
            height=height,
            texts={"caption": caption},
            render=render_caption,
            url=str(raw.meta.get("url") or ""),
        )
