"""A sample before its language is fixed: the image, the English texts, and how to render them.

Every builder turns an input record into a :class:`Draft`. Rendering the draft with its own texts
gives the original sample; rendering it with the texts the translation stage returned gives the
translated variant, with prompts drawn from the target language's pool. So translation works for
any task whose texts a builder names, and the translated text lands exactly where the English was.

Text fields (the names the translation stage's rows carry in ``field``):
``caption``; ``objects.<i>.name`` (the i-th object of a detection record); ``ref_exps.<i>`` (the
i-th referring expression of a GRIT record); ``conversations`` (a whole conversation, its turns as
JSON, translated whole: :mod:`tasks.conversations`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.layout.task_table import Picture, TaskSample
from tasks.prompts import PromptPools

# (texts, language, prompts, identity) -> conversation turns
Renderer = Callable[[dict[str, str], str, PromptPools, tuple[str, ...]], list[dict[str, str]]]


@dataclass(slots=True)
class Draft:
    key: str
    images: list[Picture]
    texts: dict[str, str]
    render: Renderer
    url: str = ""
    language: str = ""  # the draft's own language when it differs per sample (``language: auto``)

    def sample(self, dataset: str, task: str, language: str, prompts: PromptPools) -> TaskSample:
        """The sample in the draft's own (original) language (its per-sample one, if it has one)."""
        language = self.language or language
        turns = self.render(self.texts, language, prompts, (dataset, self.key))
        return self._sample(dataset, task, language, turns, language, "")

    def translated(
        self,
        dataset: str,
        task: str,
        language: str,
        original_language: str,
        texts: dict[str, str],
        prompts: PromptPools,
    ) -> TaskSample:
        """The variant in ``language``; the original answer is kept for the sample's ``meta``."""
        turns = self.render(texts, language, prompts, (dataset, self.key))
        original = self.render(self.texts, original_language, prompts, (dataset, self.key))
        answer = "\n".join(turn["value"] for turn in original if turn["from"] == "gpt")
        return self._sample(dataset, task, language, turns, original_language, answer)

    def _sample(self, dataset, task, language, turns, original_language, original_text) -> TaskSample:
        return TaskSample(
            source=dataset,
            key=self.key,
            task=task,
            language=language,
            images=list(self.images),
            conversations=turns,
            url=self.url,
            original_language=original_language,
            original_text=original_text,
        )
