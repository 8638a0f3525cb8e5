"""What a translated conversation must keep of its source: its speakers, its turns and their markup.

A conversation goes to the translation stage whole, as JSON (``conversations``), and comes back
whole or flagged (the stage protects code, formulas, URLs, InternVL markup and numbers, and judges
the sample once). Before a translated variant is built from the conversation that came back, the
task builder checks what the training data relies on, whoever produced the translation:

- ``turns_changed``: it is not a JSON list of ``{from, value}`` strings, or its turns or speakers
  differ from the source's (a turn lost, added or moved);
- ``markup_changed``: a turn's InternVL markup (``<image>``, ``<ref>…</ref>``,
  ``<box>[[…]]</box>``, ``<quad>…</quad>``) differs from the source turn's, as a multiset (a
  translation may move a grounded phrase where the target language puts it; an ``<image>`` stays
  with its turn).

>>> source = json.dumps([{"from": "human", "value": "<image>\\nWhere is <ref>the car</ref>?"}])
>>> conversation_change(source, json.dumps([{"from": "human", "value": "<image>\\n<ref>车</ref>在哪里？"}]))
>>> conversation_change(source, json.dumps([{"from": "human", "value": "车在哪里？"}]))
'markup_changed'
"""

from __future__ import annotations

import json
from collections import Counter

import regex

CONVERSATIONS = "conversations"  # the draft's text of a whole conversation, as JSON
MARKUP = regex.compile(r"<image>|<box>.*?</box>|<quad>.*?</quad>|</?ref>", regex.S)


def markup_of(text: str) -> list[str]:
    """The markup tokens of ``text`` in order."""
    return [match.group() for match in MARKUP.finditer(text)]


def conversation_change(source: str, translation: str) -> str | None:
    """``None`` if ``translation`` (JSON turns) keeps the speakers, turns and markup of ``source``,
    else the reason (``turns_changed``, ``markup_changed``)."""
    original = json.loads(source)
    try:
        turns = json.loads(translation)
    except json.JSONDecodeError:
        return "turns_changed"
    if not isinstance(turns, list) or len(turns) != len(original) or not all(
        isinstance(turn, dict) and isinstance(turn.get("value"), str) and turn.get("from") == before["from"]
        for turn, before in zip(turns, original, strict=False)
    ):
        return "turns_changed"
    for turn, before in zip(turns, original, strict=True):
        if Counter(markup_of(turn["value"])) != Counter(markup_of(before["value"])):
            return "markup_changed"
    return None
