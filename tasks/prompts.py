"""Instruction pools per language and a seeded, order-independent choice among them.

A sample's prompt depends only on (seed, dataset, key, purpose), never on the order in which
samples are built or on the process that builds them, so reruns and parallel builds agree.
Languages beyond the built-in ``en`` and ``zh`` come from configuration
(:class:`tasks.build.TaskSettings.prompts`), in the same shape as :data:`PROMPTS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

# purpose -> language -> templates. ``{expression}`` is filled with a referring expression.
PROMPTS: dict[str, dict[str, list[str]]] = {
    "caption": {
        "en": [
            "Describe this image briefly.",
            "Write a short caption for this image.",
            "What does this picture show? Answer in one sentence.",
            "Give a brief description of the image.",
            "Summarize the content of this image in a few words.",
            "Provide a one-sentence caption for this photo.",
        ],
        "zh": [
            "简要描述这张图片。",
            "为这张图片写一句简短的说明。",
            "这张图片展示了什么？请用一句话回答。",
            "请简单描述图片的内容。",
            "用几句话概括这张图片。",
            "请为这张照片写一句标题。",
        ],
    },
    "describe": {  # long descriptions (Laion-GPT4V's): a request for detail, not a caption
        "en": [
            "Describe this image in detail.",
            "Give a detailed description of this picture.",
            "What is in this image? Describe it thoroughly.",
            "Describe everything you see in this image.",
        ],
        "zh": [
            "请详细描述这张图片。",
            "请对这张图片做一个详细的描述。",
            "图片里有什么？请详细说明。",
            "请描述你在这张图片中看到的一切。",
        ],
    },
    "detect": {
        "en": [
            "Detect all objects in the image and give their bounding boxes.",
            "Locate every object in this image and output its bounding box.",
            "Find the objects in the picture and mark each with a bounding box.",
            "List the objects you see in the image together with their locations.",
        ],
        "zh": [
            "检测图中的所有物体，并给出它们的边界框。",
            "找出这张图片中的每个物体，并输出其边界框。",
            "请标出图片中所有物体的位置。",
            "列出图中你看到的物体及其位置。",
        ],
    },
    "refer": {
        "en": [
            "Please provide the bounding box coordinate of the region this sentence describes: <ref>{expression}</ref>",
            "Where is <ref>{expression}</ref> in the image? Answer with its bounding box.",
            "Locate <ref>{expression}</ref> in the image.",
        ],
        "zh": [
            "请给出这句话所描述区域的边界框坐标：<ref>{expression}</ref>",
            "<ref>{expression}</ref>在图中的什么位置？请给出它的边界框。",
            "在图中找出<ref>{expression}</ref>。",
        ],
    },
}


class PromptPools:
    """The built-in pools, extended or overridden per purpose and language by configuration."""

    def __init__(self, extra: Mapping[str, Mapping[str, list[str]]] | None = None, seed: int = 0):
        self.seed = seed
        self.pools = {purpose: dict(by_language) for purpose, by_language in PROMPTS.items()}
        for purpose, by_language in (extra or {}).items():
            for language, templates in by_language.items():
                if not templates:
                    raise ValueError(f"prompt pool {purpose}/{language} is empty")
                self.pools.setdefault(purpose, {})[language] = list(templates)

    def require(self, purpose: str, language: str) -> None:
        """Fail early, before a build starts, if a language has no pool for a purpose."""
        if language not in self.pools.get(purpose, {}):
            known = sorted(self.pools.get(purpose, {}))
            raise KeyError(
                f"no {purpose!r} prompts for language {language!r} (have {known}); "
                f"add them under the task settings' `prompts.{purpose}.{language}`"
            )

    def choose(self, purpose: str, language: str, *identity: str, **fill: str) -> str:
        """The prompt for one sample, fixed by the seed and the sample's identity."""
        self.require(purpose, language)
        pool = self.pools[purpose][language]
        text = "\x1f".join((str(self.seed), purpose, language, *identity))
        index = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % len(pool)
        return pool[index].format(**fill) if fill else pool[index]
