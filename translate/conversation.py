"""A whole conversation as one input row: its turns' pieces go out as requests, one verdict comes back.

The row's text is the conversation as JSON, ``[{"from": "human", "value": ...}, ...]`` (the task
table's ``conversations`` column). Every turn, whoever speaks it, is planned into pieces
(:mod:`translate.segment`); the pieces of all rows of a part are asked together with the part's
other texts (each distinct piece once, from the run's memory, the cache or the model). The
sample's verdict is one of two:

- **translated whole**: every piece's answer, cleaned up (:mod:`translate.cleanup`), passed
  validation (:class:`~translate.validate.Validator`, with a piece of fewer than
  ``short_piece_units`` letter units allowed to stay as it was: a name, a keyword), its
  placeholders, numbers and lines came back (:func:`translate.protect.restore`), every turn holds
  exactly the source's protected spans (``markup_changed`` otherwise), and the whole sample is
  written in the target's scripts (``wrong_script``). The row's text is the translated
  conversation as JSON, same speakers, same number of turns;
- **flagged whole**: text null, ``error`` the first reason met, turn by turn, piece by piece;
  ``bad_conversation`` when the row is no such JSON, ``empty_source`` when no turn has prose.

``raw_output`` holds the model's answers as a JSON list, one per piece, in order.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from translate.cache import CachedAnswer
from translate.cleanup import clean
from translate.client import Rejected
from translate.protect import Piece, protected, restore
from translate.segment import Skeleton, join_turn, plan_turn
from translate.validate import Validator

CONVERSATION_FIELD = "conversations"
_SHAPE_EXEMPT = ("identical_to_source", "wrong_script")  # a short piece may stay as it was


@dataclass(frozen=True)
class Turn:
    speaker: str
    source: str
    skeleton: Skeleton
    pieces: list[Piece]


@dataclass(frozen=True)
class Outcome:
    text: str | None
    error: str | None
    raw_output: str | None
    cleaned: Counter = field(default_factory=Counter)  # kind -> pieces (translate/cleanup.py)


class ConversationPlan:
    """The requests that translate one conversation, and its verdict once they are answered."""

    def __init__(self, turns: list[Turn]):
        self.turns = turns

    @classmethod
    def parse(cls, text: str | None, max_chars: int) -> ConversationPlan | str:
        """The plan, or the reason the row cannot be translated (``bad_conversation``, ``empty_source``)."""
        if not text or not text.strip():
            return "empty_source"
        try:
            turns = json.loads(text)
        except json.JSONDecodeError:
            return "bad_conversation"
        if not isinstance(turns, list) or not turns or not all(
            isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str) for t in turns
        ):
            return "bad_conversation"
        planned = []
        for turn in turns:
            skeleton, pieces = plan_turn(turn["value"], max_chars)
            planned.append(Turn(turn["from"], turn["value"], skeleton, pieces))
        if not any(turn.pieces for turn in planned):
            return "empty_source"
        return cls(planned)

    @property
    def texts(self) -> list[str]:
        """Every request of the conversation (repeats included), in order."""
        return [piece.text for turn in self.turns for piece in turn.pieces]

    def verdict(self, answers: dict, validator: Validator, short_piece_units: int) -> Outcome:
        """Translated whole or flagged whole, from ``answers`` (piece text -> CachedAnswer | Rejected)."""
        error = None
        raws: list[str | None] = []
        result: list[dict[str, str]] = []
        prose: list[str] = []
        cleaned: Counter = Counter()
        for turn in self.turns:
            translations = []
            for piece in turn.pieces:
                answer = answers.get(piece.text)
                output = answer.output if isinstance(answer, CachedAnswer) else None
                raws.append(output)
                if error:
                    continue
                if isinstance(answer, Rejected):
                    error = f"request_rejected_{answer.status}"
                    continue
                if answer is None:
                    error = "empty_output"
                    continue
                output, removed = clean(piece.text, output)
                cleaned.update(removed)
                # Numbers: restore() below holds a piece to the same digits, as a multiset (number_changed).
                error = validator.reason(piece.text, output, answer.finish_reason, check_numbers=False)
                if error in _SHAPE_EXEMPT and validator.profile.units(piece.text)[1] < short_piece_units:
                    error = None
                if error is None:
                    restored, error = restore(piece, output)
                    translations.append(restored)
                    prose.append(output)
            if error:
                continue
            value = join_turn(turn.skeleton, translations)
            if protected(value) != protected(turn.source):
                error = "markup_changed"
            result.append({"from": turn.speaker, "value": value})
        if error is None and validator.profile.share(" ".join(prose)) < validator.settings.min_script_share:
            error = "wrong_script"
        raw = json.dumps(raws, ensure_ascii=False)
        if error:
            return Outcome(None, error, raw, cleaned)
        return Outcome(json.dumps(result, ensure_ascii=False), None, raw, cleaned)


def origin_of(origins: list[str]) -> str:
    """Where a conversation's answers came from: ``request`` if any piece was asked, else ``run``,
    else ``cache``; ``none`` if nothing was asked."""
    for origin in ("request", "run", "cache"):
        if origin in origins:
            return origin
    return "none"
