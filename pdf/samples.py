"""OCR task conversations from a page's text layer: the transcription and the grounded variant.

The same two shapes as the OCR stage's samples (``ocr/tasks.py``), with the same instruction pools
(``transcribe``, ``grounded``, per language, which the flow fills from the language registry):

- transcription: the lines in reading order, one per line;
- grounded: each line as ``<ref>text</ref><box>[[x1, y1, x2, y2]]</box>``, on 0..1000 of the page.

The variant and the prompt are drawn with a generator seeded by (seed, source, key), so a rebuild
gives the same conversations.
"""

from __future__ import annotations

import random

from .lines import TextLine
from .settings import PdfSettings


def scale(value: float, size: int) -> int:
    """A pixel coordinate as an integer in 0..1000 of ``size`` pixels."""
    return min(1000, max(0, round(value / max(1, size) * 1000)))


def grounded_line(line: TextLine, width: int, height: int) -> str:
    x0, y0, x1, y1 = line.box
    box = [scale(x0, width), scale(y0, height), scale(x1, width), scale(y1, height)]
    return f"<ref>{line.text}</ref><box>[{box}]</box>"


def prompts(settings: PdfSettings, purpose: str, language: str) -> list[str]:
    pool = settings.prompts.get(purpose, {}).get(language)
    if not pool:
        raise ValueError(f"pdf.prompts: no {purpose!r} instructions for language {language!r} "
                         f"(the flow fills them from `languages`; have: {sorted(settings.prompts.get(purpose, {}))})")
    return pool


def conversation(lines: list[TextLine], width: int, height: int, language: str, source: str, key: str,
                 settings: PdfSettings) -> tuple[list[dict[str, str]], str]:
    """(InternVL turns, variant) for one page whose text layer is its transcription."""
    rng = random.Random(f"{settings.seed}:{source}:{key}")
    if rng.random() < settings.grounded_fraction:
        variant = "grounded"
        answer = "\n".join(grounded_line(line, width, height) for line in lines)
    else:
        variant = "transcribe"
        answer = "\n".join(line.text for line in lines)
    prompt = rng.choice(prompts(settings, variant, language))
    return [{"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": answer}], variant
