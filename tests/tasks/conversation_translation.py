"""A source's conversations through the real translation stage, in-process, against a test double model.

The task stage writes its translation inputs (:class:`tasks.stage.TranslationInputs`, one part per
unit), the translation stage's :class:`~translate.translator.Translator` translates them, asking
:class:`~tests.translate.translator_double.TranslatorDouble` (an OpenAI-compatible loopback server,
not a model: its answers are ``answer(text)``), and writes its parts where the task builder reads them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pipelines.languages import Language
from pipelines.storage import Storage
from tasks import TaskSettings
from tasks.stage import TaskStageContext, TranslationInputs
from tests.translate.translator_double import TranslatorDouble, word_for_word
from translate.client import ChatClient
from translate.settings import TranslateSettings
from translate.translator import Translator

LANGUAGES = {"zh": Language(name="Chinese", scripts=["Han"])}


def translate_source(root: Path, source, answer: Callable[[str], str] = word_for_word,
                     settings: TaskSettings | None = None) -> Counter:
    """Translate ``source``'s texts under ``root`` into Chinese; returns what the model was asked (text -> times)."""
    ctx = TaskStageContext(str(root), {}, settings or TaskSettings())
    inputs = TranslationInputs([source])
    paths = []
    for unit in inputs.units(ctx):
        inputs.run_unit(unit, ctx)
        paths.append(inputs.target(ctx.storage(), unit))
    double = TranslatorDouble(answer)
    try:
        async def go():
            async with ChatClient([double.url], model=double.model, retry_backoff_s=0.05, max_backoff_s=0.2) as client:
                translator = Translator(Storage(str(root)), client, LANGUAGES, TranslateSettings())
                await translator.translate_source(source.name, paths, ["zh"])

        asyncio.run(go())
    finally:
        double.close()
    return double.asked
