"""What a translation must not touch, and the placeholders that keep it out of the model's hands.

A conversation turn mixes prose with text that has to come back byte for byte. Two kinds:

- **blocks** (fenced code, display math ``$$…$$`` / ``\\[…\\]`` / ``\\begin{env}…\\end{env}``, and
  ``<image>``): never sent; the prose before and after them is translated separately;
- **inline spans** (inline code, inline math ``$…$`` / ``\\(…\\)``, URLs, InternVL markup ``<ref>``,
  ``</ref><box>[[…]]</box>``, ``<box>…</box>``, ``<quad>…</quad>``, other tags, and any ``{{…}}`` of
  the source): sent as numbered placeholders ``{{1}}``, ``{{2}}``…, so the model translates the
  sentence around them whole and may move them where the target language puts them.

:func:`restore` puts the spans back into an answer and refuses one whose placeholders were lost,
doubled, invented or whose ``<ref>`` came after its ``</ref>`` (``placeholder_changed``), whose
numbers differ from the source's (``number_changed``: a count, a year, a value read off a chart),
or whose lines were merged or dropped (``structure_changed``).

>>> piece = Piece("Run {{1}} in {{2}}.", ("`ls -la`", "https://example.com/docs"))
>>> restore(piece, "在 {{2}} 中运行 {{1}}。")
('在 https://example.com/docs 中运行 `ls -la`。', None)
>>> restore(piece, "运行 {{1}}。")
(None, 'placeholder_changed')
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import regex

from translate.digits import number_list

BLOCK = regex.compile(
    r"(?P<fence>(?P<f>`{3,}|~{3,})(?:.*?(?P=f)|.*\Z))"
    r"|\$\$.+?\$\$|\\\[.+?\\\]"
    r"|\\begin\{(?P<env>[A-Za-z*]+)\}.*?\\end\{(?P=env)\}"
    r"|<image>",
    regex.S,
)
INLINE = regex.compile(
    r"``[^\n]+?``|`[^`\n]+`"  # inline code
    r"|\\\(.+?\\\)"  # inline math \( … \)
    r"|\$(?=[^\s$\d])[^$\n]*?(?<=\S)\$(?!\d)|\$(?=\d[^$\n]*?[A-Za-z\\^_{}=])[^$\n]*?(?<=\S)\$(?!\d)"  # $…$ not $5
    # URLs, in ASCII: a translation may put Chinese text or punctuation right after one
    r"|(?:https?|ftp)://[!#-&(-;=?-~]*[#-&(*+/-9=?-Z_a-z|~]|www\.[!#-&(-;=?-~]*[#-&(*+/-9=?-Z_a-z|~]"
    r"|(?P<open><ref>)|(?P<close></ref>(?:<box>.*?</box>)?)"  # a referring expression and its box
    r"|<(?:box|quad)>.*?</(?:box|quad)>"
    r"|</?[A-Za-z][\w:-]*(?:\s[^<>\n]*)?/?>"  # any other tag
    r"|\{\{.*?\}\}",  # the source's own double braces, so that every {{n}} sent is ours
    regex.S,
)
# The simple patterns use re, which is faster than regex here; regex is for \p{L} and the like.
PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")
# What an answer may make of a placeholder: spaces inside, full-width braces.
_ANSWERED = re.compile(r"[{｛]{2}\s*(\d+)\s*[}｝]{2}")
_LETTER = regex.compile(r"\p{L}")


@dataclass(frozen=True, slots=True)
class Piece:
    """One request: prose with placeholders, what each stands for, and (open, close) pairs, 1-based."""

    text: str
    spans: tuple[str, ...] = ()
    pairs: tuple[tuple[int, int], ...] = ()


def protected(text: str) -> Counter:
    """Every block and inline span of ``text``: what a translation of it must hold unchanged."""
    found: Counter = Counter()
    position = 0
    for match in BLOCK.finditer(text):
        found.update(m.group() for m in INLINE.finditer(text, position, match.start()))
        found[match.group()] += 1
        position = match.end()
    found.update(m.group() for m in INLINE.finditer(text, position))
    return found


def has_prose(masked: str) -> bool:
    """Whether text with placeholders has any letter outside them (else there is nothing to translate)."""
    return bool(_LETTER.search(PLACEHOLDER.sub("", masked)))


def numbers(text: str) -> Counter:
    """The numbers in digits, as a multiset, read as :mod:`translate.digits` reads them (full-width
    digits and separators as ASCII: ``１２`` is ``12``)."""
    return Counter(number_list(_ANSWERED.sub(" ", text)))


def lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def restore(piece: Piece, answer: str) -> tuple[str | None, str | None]:
    """(the answer with every span back in place, None) or (None, the reason it is refused)."""
    answer = answer.strip()
    found = {}
    for match in _ANSWERED.finditer(answer):
        number = int(match.group(1))
        if number in found or not 1 <= number <= len(piece.spans):
            return None, "placeholder_changed"
        found[number] = match
    if len(found) != len(piece.spans):
        return None, "placeholder_changed"
    for opening, closing in piece.pairs:
        inside = answer[found[opening].end() : found[closing].start()]
        if found[opening].start() > found[closing].start() or not inside.strip():
            return None, "placeholder_changed"
    if numbers(answer) != numbers(piece.text):
        return None, "number_changed"
    if lines(answer) != lines(piece.text):
        return None, "structure_changed"
    return _ANSWERED.sub(lambda m: piece.spans[int(m.group(1)) - 1], answer), None
