"""What an :class:`~tasks.published.mapping.Item` becomes: InternVL conversations, as drafts.

- ``scene_text``: the legible lines in reading order (:mod:`.text_lines`), as the OCR stage builds its
  corpora' samples: a transcription (one line each) or, for ``grounded_fraction`` of the images, each
  line as ``<ref>text</ref><box>[[x1, y1, x2, y2]]</box>`` (or ``<quad>[[x1, y1, ..., x4, y4]]</quad>``)
  on the 0..1000 grid of the annotated size; prompts from the ``transcribe`` / ``grounded`` pools in
  the sample's language (``auto``: by the script of its text). Not translatable.
- ``document``: a page's whole text, transcribed (SynthDoG).
- ``vqa``: one conversation per image, its questions as turns (the first carries ``<image>``), or one
  per question (``per_question``). Where a question has several answers, the most frequent one
  (compared case- and space-insensitively; ties: the first given) is the answer.
- ``caption``: one of the image's captions, chosen by a hash of (seed, key), answering a prompt of
  the ``caption`` pool.
- ``conversation``: LLaVA/InternVL turns kept whole (:func:`tasks.conversations.normalised_turns`).

Drops: ``no_legible_text``, ``empty_text``, ``no_questions``, ``empty_caption``; per region or question
``object:illegible_region``, ``object:malformed_polygon``, ``object:empty_question``,
``object:empty_answer`` (a part of a record, so they do not count as records).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from functools import partial

from pipelines.layout.task_table import Picture, human_turn
from tasks.captioning import render_caption
from tasks.conversations import conversation_draft, normalised_turns
from tasks.draft import Draft
from tasks.prompts import PromptPools
from tasks.published.mapping import Format, Item
from tasks.published.text_lines import legible_lines

SCALE = 1000


def _unit_interval(*parts: object) -> float:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _scale(value: float, size: float) -> int:
    return min(SCALE, max(0, round(value / max(size, 1.0) * SCALE)))


def render_text_lines(
    coordinates: list[list[int]] | None, grounded_fraction: float, box_format: str,
    texts: dict[str, str], language: str, prompts: PromptPools, identity: tuple[str, ...],
) -> list[dict[str, str]]:
    """Transcription or grounded lines (``coordinates``: a quad's 8 numbers per line on 0..1000, or None)."""
    lines = [texts[f"lines.{i}"] for i in range(len(texts))]
    if coordinates and _unit_interval(prompts.seed, "grounded", *identity) < grounded_fraction:
        answer = "\n".join(_grounded(text, quad, box_format) for text, quad in zip(lines, coordinates, strict=True))
        return [human_turn(prompts.choose("grounded", language, *identity)), {"from": "gpt", "value": answer}]
    return [human_turn(prompts.choose("transcribe", language, *identity)), {"from": "gpt", "value": "\n".join(lines)}]


def _grounded(text: str, quad: list[int], box_format: str) -> str:
    if box_format == "quad":
        return f"<ref>{text}</ref><quad>[[{', '.join(map(str, quad))}]]</quad>"
    xs, ys = quad[0::2], quad[1::2]
    return f"<ref>{text}</ref><box>[[{min(xs)}, {min(ys)}, {max(xs)}, {max(ys)}]]</box>"


def scene_text(fmt: Format, item: Item, pictures: list[Picture], language: str, detect, seed: int,
               drops: Counter) -> list[Draft]:
    lines = legible_lines(item.regions, drops)
    if not lines:
        drops["no_legible_text"] += 1
        return []
    width, height = item.size or (pictures[0].width, pictures[0].height)
    coordinates = [[_scale(v, width if i % 2 == 0 else height) for point in line.quad for i, v in enumerate(point)]
                   for line in lines]
    texts = {f"lines.{i}": line.text for i, line in enumerate(lines)}
    render = partial(render_text_lines, coordinates, fmt.grounded_fraction, fmt.box_format)
    return [Draft(item.key, pictures, texts, render, "", _language(texts.values(), language, detect))]


def document(fmt: Format, item: Item, pictures: list[Picture], language: str, detect, seed: int,
             drops: Counter) -> list[Draft]:
    if not item.text:
        drops["empty_text"] += 1
        return []
    texts = {"lines.0": item.text}
    render = partial(render_text_lines, None, 0.0, fmt.box_format)
    return [Draft(item.key, pictures, texts, render, "", _language(texts.values(), language, detect))]


def chosen_answer(answers: list[str]) -> str:
    """The most frequent answer (case and spacing aside), in the spelling first given; ties: the first."""
    counts = Counter(" ".join(a.casefold().split()) for a in answers)
    best = max(counts.values())
    return next(a for a in answers if counts[" ".join(a.casefold().split())] == best)


def vqa(fmt: Format, item: Item, pictures: list[Picture], language: str, detect, seed: int,
        drops: Counter) -> list[Draft]:
    pairs = []
    for question, answers in item.qa:
        if not question:
            drops["object:empty_question" if not fmt.per_question else "empty_question"] += 1
        elif not answers:
            drops["object:empty_answer" if not fmt.per_question else "empty_answer"] += 1
        else:
            pairs.append((question + fmt.question_suffix, chosen_answer(answers)))
    if fmt.per_question:
        return [_qa_draft(f"{item.key}-q{i}", [pair], pictures, language, detect) for i, pair in enumerate(pairs)]
    if not pairs:
        drops["no_questions"] += 1
        return []
    return [_qa_draft(item.key, pairs, pictures, language, detect)]


def _qa_draft(key: str, pairs: list[tuple[str, str]], pictures, language, detect) -> Draft:
    turns = []
    for question, answer in pairs:
        turns.append(human_turn(question) if not turns and pictures else {"from": "human", "value": question})
        turns.append({"from": "gpt", "value": answer})
    return conversation_draft(key, turns, pictures, _language([a for _, a in pairs], language, detect))


def caption(fmt: Format, item: Item, pictures: list[Picture], language: str, detect, seed: int,
            drops: Counter) -> list[Draft]:
    if not item.captions:
        drops["empty_caption"] += 1
        return []
    chosen = item.captions[int(_unit_interval(seed, "caption", item.key) * len(item.captions))]
    return [Draft(item.key, pictures, {"caption": chosen}, render_caption, "", _language([chosen], language, detect))]


def conversation(fmt: Format, item: Item, pictures: list[Picture], language: str, detect, seed: int,
                 drops: Counter) -> list[Draft]:
    turns = normalised_turns(item.conversations, len(pictures), drops)
    if turns is None:
        return []
    answers = [t["value"] for t in turns if t["from"] == "gpt"]
    return [conversation_draft(item.key, turns, pictures, _language(answers, language, detect))]


def _language(texts, language: str, detect) -> str:
    if language != "auto" or detect is None:
        return ""  # the source's own language
    return detect(" ".join(texts))


Builder = Callable[[Format, Item, list[Picture], str, object, int, Counter], list[Draft]]
BUILDERS: dict[str, Builder] = {"scene_text": scene_text, "document": document, "vqa": vqa, "caption": caption,
                                "conversation": conversation}
PURPOSES = {"scene_text": ["transcribe", "grounded"], "document": ["transcribe"], "caption": ["caption"]}
TRANSLATABLE = {"vqa", "caption", "conversation"}

# Table 1b's builders (grounding, chat) live beside its presets.
from tasks.published.finetune_builders import FINETUNE_BUILDERS, FINETUNE_PURPOSES, FINETUNE_TRANSLATABLE  # noqa: E402

BUILDERS.update(FINETUNE_BUILDERS)
PURPOSES.update(FINETUNE_PURPOSES)
TRANSLATABLE |= FINETUNE_TRANSLATABLE
