"""The two builders Table 1b adds to :mod:`tasks.published.builders`: ``grounding`` and ``chat``.

- ``grounding`` (RefCOCO/+/g, Visual Genome): each region of an image (its text: a referring
  expression or a region description; its box ``[x, y, w, h]`` in pixels of the annotated size,
  else the image's) becomes a turn: a prompt of the ``refer`` pool naming ``<ref>expression</ref>``,
  answered ``<ref>expression</ref><box>[[x1, y1, x2, y2]]</box>`` on the 0..1000 grid, InternVL's
  grounding syntax. An image's regions are one multi-turn conversation, ``MAX_TURNS`` regions at most
  (a Visual Genome image has about fifty: the rest follow in further conversations of the same
  image, keys ``<key>-2``, ``<key>-3``, ...), or one conversation per region (``per_question``).
  Drops: ``object:empty_expression``, ``object:malformed_box`` (not four numbers, no area, outside
  the image), ``no_regions``, ``no_image``. The expressions are the draft's texts (``ref_exps.<i>``,
  as GRIT's), so a translated variant changes them and keeps every box.
- ``chat`` (ShareGPT, OpenHermes 2.5, Alpaca-style instruction data, LLaVA-style files with other
  speaker names): the publisher's turns through :func:`~tasks.published.finetune_rules.chat_turns`
  (speaker names mapped, turns before the first question left out, the refusals counted by their
  reason: ``bad_conversation``, ``empty_conversation``, ``empty_question``, ``empty_answer``), then
  the image placeholders as InternVL expects them (:func:`tasks.conversations.normalised_turns`).
  A system prompt is put in front of the first question: the task tables hold alternating
  human/gpt turns (:func:`pipelines.layout.task_table.conversation_problem`), and the system
  prompt's instruction is kept that way rather than lost.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

from pipelines.layout.task_table import Picture
from tasks.conversations import conversation_draft, normalised_turns
from tasks.detection import grounded, scale_box
from tasks.draft import Draft
from tasks.prompts import PromptPools
from tasks.published.finetune_rules import Dropped, chat_turns
from tasks.published.mapping import Format, Item

MAX_TURNS = 10  # regions per grounding conversation


def _language(texts, language: str, detect) -> str:
    return detect(" ".join(texts)) if language == "auto" and detect is not None else ""


def _box(region, width: float, height: float) -> list[int] | None:
    box = region.box if region.box is not None else region.points
    if not isinstance(box, list | tuple) or len(box) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        return None
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0 or x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return None
    return scale_box(x, y, x + w, y + h, width, height)


def render_grounding(boxes: list[list[int]], texts: dict[str, str], language: str, prompts: PromptPools,
                     identity: tuple[str, ...]) -> list[dict[str, str]]:
    """A question naming each expression, answered with the expression and its box."""
    turns = []
    for index, box in enumerate(boxes):
        expression = texts[f"ref_exps.{index}"]
        question = prompts.choose("refer", language, *identity, str(index), expression=expression)
        turns.append({"from": "human", "value": ("<image>\n" if not turns else "") + question})
        turns.append({"from": "gpt", "value": grounded(expression, [box])})
    return turns


def grounding(fmt: Format, item: Item, pictures: list[Picture], language: str, detect, seed: int,
              drops: Counter) -> list[Draft]:
    if len(pictures) != 1:
        drops["no_image"] += 1
        return []
    width, height = item.size or (pictures[0].width, pictures[0].height)
    regions = []
    for region in item.regions:
        if not region.text:
            drops["object:empty_expression"] += 1
            continue
        box = _box(region, width, height)
        if box is None:
            drops["object:malformed_box"] += 1
            continue
        regions.append((region.text, box))
    if not regions:
        drops["no_regions"] += 1
        return []
    size = 1 if fmt.per_question else MAX_TURNS
    drafts = []
    for number, start in enumerate(range(0, len(regions), size), start=1):
        chunk = regions[start:start + size]
        key = item.key if number == 1 else f"{item.key}-{number}"
        texts = {f"ref_exps.{i}": text for i, (text, _) in enumerate(chunk)}
        render = partial(render_grounding, [box for _, box in chunk])
        drafts.append(Draft(key, pictures, texts, render, "", _language(texts.values(), language, detect)))
    return drafts


def chat(fmt: Format, item: Item, pictures: list[Picture], language: str, detect, seed: int,
         drops: Counter) -> list[Draft]:
    try:
        turns = chat_turns(item.conversations, keep_system=False)
    except Dropped as dropped:
        drops[dropped.reason] += 1
        return []
    turns = normalised_turns(turns, len(pictures), drops)
    if turns is None:
        return []
    answers = [t["value"] for t in turns if t["from"] == "gpt"]
    return [conversation_draft(item.key, turns, pictures, _language(answers, language, detect))]


FINETUNE_BUILDERS = {"grounding": grounding, "chat": chat}
FINETUNE_PURPOSES = {"grounding": ["refer"]}
FINETUNE_TRANSLATABLE = {"grounding", "chat"}
