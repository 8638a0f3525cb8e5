"""Translating conversations without touching their markup.

A turn of an InternVL conversation mixes natural language with markup the model must learn byte
for byte: ``<image>``, ``<ref>…</ref>``, ``<box>[[x1, y1, x2, y2]]</box>``, ``<quad>…</quad>``.
:func:`split_turn` cuts a turn into *pieces*: the natural-language runs between markup tokens and
inside ``<ref>…</ref>`` (what is translated, one request each), and the *skeleton* around them
(markup, coordinates, the whitespace at the pieces' edges, runs with no letter at all), which is
kept as it is. :func:`join_turn` puts translated pieces back into the skeleton.

A translated piece must not bring markup of its own and must keep the source's numbers (a count,
a year, a value read off a chart): otherwise it is refused as ``markup_changed``.

>>> skeleton, pieces = split_turn("Where is <ref>the red car</ref>? It is <box>[[10, 20, 30, 40]]</box>.")
>>> pieces
['Where is', 'the red car', '? It is']
>>> join_turn(skeleton, ["在哪里", "红色的车", "？它在"])
'在哪里 <ref>红色的车</ref>？它在 <box>[[10, 20, 30, 40]]</box>.'
"""

from __future__ import annotations

from collections import Counter

import regex

MARKUP = regex.compile(r"<image>|<box>.*?</box>|<quad>.*?</quad>|</?ref>", regex.S)
_ANY_MARKUP = regex.compile(r"</?(?:image|box|quad|ref|img)>")
_LETTER = regex.compile(r"\p{L}")
_NUMBER = regex.compile(r"\d+(?:[.,]\d+)*")
_EDGES = regex.compile(r"^(\s*)(.*?)(\s*)$", regex.S)

# A skeleton is a list of str (kept as it is) and int (the index of a translated piece).
Skeleton = list[str | int]


def split_turn(text: str) -> tuple[Skeleton, list[str]]:
    """(skeleton, pieces) of one turn; ``join_turn(skeleton, pieces) == text``."""
    skeleton: Skeleton = []
    pieces: list[str] = []
    position = 0
    for match in MARKUP.finditer(text):
        _add_text(text[position : match.start()], skeleton, pieces)
        skeleton.append(match.group())
        position = match.end()
    _add_text(text[position:], skeleton, pieces)
    return skeleton, pieces


def _add_text(chunk: str, skeleton: Skeleton, pieces: list[str]) -> None:
    if not chunk:
        return
    lead, core, trail = _EDGES.match(chunk).groups()
    # Punctuation, numbers and whitespace alone stay as they are: nothing to translate there.
    if not _LETTER.search(core):
        skeleton.append(chunk)
        return
    if lead:
        skeleton.append(lead)
    skeleton.append(len(pieces))
    pieces.append(core)
    if trail:
        skeleton.append(trail)


def join_turn(skeleton: Skeleton, pieces: list[str]) -> str:
    return "".join(pieces[part] if isinstance(part, int) else part for part in skeleton)


def piece_problem(source: str, translation: str) -> str | None:
    """``"markup_changed"`` if the translated piece adds markup or loses/changes a number, else None."""
    if _ANY_MARKUP.search(translation):
        return "markup_changed"
    if Counter(_NUMBER.findall(source)) != Counter(_NUMBER.findall(translation)):
        return "markup_changed"
    return None


def markup_of(text: str) -> list[str]:
    """The markup tokens of ``text`` in order (what a translated turn must reproduce exactly)."""
    return [match.group() for match in MARKUP.finditer(text)]
