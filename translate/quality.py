"""A quality score per translated text: its back-translation into English, scored against the source.

With ``translation.stage.quality.back_translation``, each distinct accepted answer of a part (after
clean-up and validation) is sent back through the same model with :func:`~translate.prompt.build_back_messages`
("translate this <language> text into English, faithfully"), and the English that comes back is
scored against the English source with chrF (sacrebleu's ``CHRF()``, character 6-grams and
beta 2, 0-100). A translation that lost an object, changed a number or answered another text comes
back as different English and scores lower. A conversation is scored by its pieces (each as it was
asked and answered, placeholders and all), their scores weighted by the pieces' characters.
``min_quality`` turns the score into a filter (``low_quality``). The back-translations are cached like translations (the cache's target is
``<target>-en``, its prompt version :data:`~translate.prompt.BACK_PROMPT_VERSION`), so a rerun
asks nothing twice.

What the score measures is bounded by the model: a model that back-translates its own mistake into
the source's words (it "knows" what was meant) hides it. The mechanism is tested with hand-written
back-translations (tests/translate/test_quality.py); how well a given model's scores separate good
from bad translations is to be measured with that model.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pipelines._imports import require
from translate.cache import CachedAnswer, TranslationCache, text_hash
from translate.cleanup import clean
from translate.client import Rejected, Reply
from translate.conversation import ConversationPlan
from translate.prompt import build_back_messages


def chrf(hypothesis: str, reference: str) -> float:
    """sacrebleu's sentence chrF (0-100) of ``hypothesis`` against ``reference``."""
    metrics = require("sacrebleu.metrics", "translate")
    return float(metrics.CHRF().sentence_score(hypothesis, [reference]).score)


@dataclass
class BackTranslations:
    """The English of each distinct answer (None where the server refused it), and what it cost."""

    english: dict[str, str | None]
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def back_translate(client, cache: TranslationCache | None, outputs: dict[str, int], target: str,
                         language: str) -> BackTranslations:
    """Each of ``outputs`` (answer -> its token budget), written in ``language``, in English: from the
    cache where it holds it, else asked (all at once; the client bounds what is in flight)."""
    hashes = {output: text_hash(output) for output in outputs}
    key = f"{target}-en"
    found = await asyncio.to_thread(cache.lookup, key, list(hashes.values())) if cache is not None else {}
    result = BackTranslations({o: found[h].output.strip() for o, h in hashes.items() if h in found})
    todo = [o for o in outputs if o not in result.english]
    replies = await asyncio.gather(*(client.chat(build_back_messages(o, language), outputs[o]) for o in todo))
    entries = []
    for output, reply in zip(todo, replies, strict=True):
        result.requests += 1
        if isinstance(reply, Rejected):
            result.english[output] = None
            continue
        result.english[output] = reply.content.strip()
        if isinstance(reply, Reply):
            result.prompt_tokens += reply.prompt_tokens or 0
            result.completion_tokens += reply.completion_tokens or 0
        entries.append((hashes[output], output, CachedAnswer(reply.content, reply.finish_reason)))
    if cache is not None and entries:
        await asyncio.to_thread(cache.add, key, entries)
    return result


async def score(client, cache: TranslationCache | None, pairs: list[tuple[str, str]], budget, target: str,
                language: str) -> tuple[list[tuple[str | None, float | None]], BackTranslations]:
    """For each ``(source, translation)`` pair, its back-translation and chrF (None, None where the
    server refused it); ``budget(source)`` is the English answer's token budget."""
    outputs: dict[str, int] = {}
    for source, output in pairs:
        outputs[output] = max(outputs.get(output, 0), budget(source))
    back = await back_translate(client, cache, outputs, target, language)
    scored = []
    for source, output in pairs:
        english = back.english[output]
        scored.append((english, None if english is None else round(chrf(english, source), 3)))
    return scored, back


def weighted_score(sources: list[str], scores: list[float | None]) -> float | None:
    """One score for a text asked in pieces: the pieces' scores weighted by their sources' characters
    (None if any piece has none: the server refused its back-translation)."""
    if not scores or any(s is None for s in scores):
        return None
    weights = [max(1, len(source)) for source in sources]
    return round(sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights), 4)


def scored_pieces(source: str, plan, translation: str, answers: dict) -> list[tuple[str, str]]:
    """The (source, translation) pairs a row is scored by: itself, or a conversation's pieces
    (``plan``, a :class:`~translate.conversation.ConversationPlan`) as they were asked and answered."""
    if not isinstance(plan, ConversationPlan):
        return [(source.strip(), translation)]
    return [(text, clean(text, answers[text].output)[0]) for text in plan.texts]
