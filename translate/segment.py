"""A conversation turn as the requests that translate it, and the turn again from their answers.

:func:`plan_turn` cuts a turn into a *skeleton* (blocks, whitespace at the edges, runs without
prose: kept as they are) and :class:`~translate.protect.Piece` s (prose with its inline spans as
placeholders, one request each). A stretch of prose longer than ``max_chars`` is cut at paragraph
breaks, then line breaks, then sentence ends, then spaces (the first that makes every piece fit),
never inside ``<ref>…</ref>``; the separators stay in the skeleton, so the answers are joined back
with the source's own breaks.

>>> skeleton, pieces = plan_turn("<image>\\nWhat does `ls` print?", max_chars=100)
>>> skeleton, [p.text for p in pieces]
(['<image>', '\\n', 0], ['What does {{1}} print?'])
>>> join_turn(skeleton, ["`ls` 打印什么？"])
'<image>\\n`ls` 打印什么？'
"""

from __future__ import annotations

import regex

from translate.protect import BLOCK, INLINE, PLACEHOLDER, Piece, has_prose

# A skeleton is a list of str (kept as it is) and int (the index of a piece's translation).
Skeleton = list[str | int]

_BREAKS = (
    regex.compile(r"[ \t]*\n[ \t]*\n\s*"),  # paragraphs
    regex.compile(r"[ \t]*\n\s*"),  # lines
    # sentence ends, not after a common abbreviation ("e.g. ", "Dr. ")
    regex.compile(r"(?<=[.!?。！？][\"'”’)\]]?)(?<!\b(?:e\.g|i\.e|etc|vs|Mr|Mrs|Ms|Dr|St|Fig|No|cf)\.)\s+"),
    regex.compile(r"\s+"),  # words
)
_EDGES = regex.compile(r"^(\s*)(.*?)(\s*)$", regex.S)


def plan_turn(text: str, max_chars: int) -> tuple[Skeleton, list[Piece]]:
    """(skeleton, pieces) of one turn: ``join_turn(skeleton, [p.text ...])`` is ``text`` with placeholders."""
    skeleton: Skeleton = []
    pieces: list[Piece] = []
    position = 0
    for block in BLOCK.finditer(text):
        _prose(text[position : block.start()], max_chars, skeleton, pieces)
        skeleton.append(block.group())
        position = block.end()
    _prose(text[position:], max_chars, skeleton, pieces)
    return skeleton, pieces


def join_turn(skeleton: Skeleton, translations: list[str]) -> str:
    return "".join(translations[part] if isinstance(part, int) else part for part in skeleton)


def _prose(chunk: str, max_chars: int, skeleton: Skeleton, pieces: list[Piece]) -> None:
    """Add a stretch of text between blocks: its spans masked, cut to size, each part a piece."""
    if not chunk:
        return
    spans: list[str] = []
    opens: dict[int, int] = {}  # placeholder number of an open <ref> -> its close's, once seen
    pending: list[int] = []

    def mask(match: regex.Match) -> str:
        spans.append(match.group())
        number = len(spans)
        if match.group("open"):
            pending.append(number)
        elif match.group("close") and pending:
            opens[pending.pop()] = number
        return f"{{{{{number}}}}}"

    masked = INLINE.sub(mask, chunk)
    inside_ref = []  # character ranges that must not be cut: from an open <ref> to its close
    marks = {int(m.group(1)): m for m in PLACEHOLDER.finditer(masked)}
    for opening, closing in opens.items():
        inside_ref.append((marks[opening].start(), marks[closing].end()))
    for kind, start, end in _cut(masked, 0, len(masked), max_chars, 0, inside_ref):
        part = masked[start:end]
        if kind == "break":
            skeleton.append(_unmask(part, spans))
        else:
            _piece(part, spans, opens, skeleton, pieces)


def _cut(text: str, start: int, end: int, max_chars: int, level: int, keep: list[tuple[int, int]]):
    """``("text" | "break", start, end)`` runs covering text[start:end], the texts within ``max_chars``
    where the break levels allow (greedily packed: as few pieces as fit)."""
    if end - start <= max_chars or level == len(_BREAKS):
        yield "text", start, end
        return
    breaks = [m for m in _BREAKS[level].finditer(text, start, end)
              if m.start() > start and m.end() < end and not any(a < m.start() < b for a, b in keep)]
    runs, current = [], start
    for match in breaks:
        runs.append((current, match.start(), match))
        current = match.end()
    runs.append((current, end, None))
    packed_start, packed_end = runs[0][0], runs[0][1]
    for (run_start, run_end, _), (_, _, before) in zip(runs[1:], runs, strict=False):
        if run_end - packed_start <= max_chars:
            packed_end = run_end
            continue
        yield from _cut(text, packed_start, packed_end, max_chars, level + 1, keep)
        yield "break", before.start(), before.end()
        packed_start, packed_end = run_start, run_end
    yield from _cut(text, packed_start, packed_end, max_chars, level + 1, keep)


def _piece(part: str, spans: list[str], opens: dict[int, int], skeleton: Skeleton, pieces: list[Piece]) -> None:
    lead, core, trail = _EDGES.match(part).groups()
    if not has_prose(core):  # punctuation, numbers, placeholders alone: nothing to translate
        skeleton.append(_unmask(part, spans))
        return
    numbers = [int(m.group(1)) for m in PLACEHOLDER.finditer(core)]
    local = {number: index + 1 for index, number in enumerate(numbers)}
    text = PLACEHOLDER.sub(lambda m: f"{{{{{local[int(m.group(1))]}}}}}", core)
    pairs = tuple((local[a], local[b]) for a, b in opens.items() if a in local and b in local)
    if lead:
        skeleton.append(_unmask(lead, spans))
    skeleton.append(len(pieces))
    pieces.append(Piece(text, tuple(spans[n - 1] for n in numbers), pairs))
    if trail:
        skeleton.append(_unmask(trail, spans))


def _unmask(text: str, spans: list[str]) -> str:
    return PLACEHOLDER.sub(lambda m: spans[int(m.group(1)) - 1], text)
