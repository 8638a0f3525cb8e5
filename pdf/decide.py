"""Per page: is the text layer the page's text, or must the page be OCRed? And is it kept at all?

The text layer is an exact, free transcription when it is right, and silently wrong often enough
(Chinese PDFs most of all) that it cannot be trusted blindly. Each check below catches one way it
lies; the first that fires is the page's reason, kept and counted:

``no_text_layer``          no visible character (a scan, or text drawn as paths)
``unmapped_font``          characters pdfium could not map to Unicode (CID fonts without ToUnicode)
``private_use``            characters in the private-use areas (a font's own codes leaking out)
``replacement_chars``      U+FFFD or control characters where text should be
``invisible_text``         most characters drawn invisible (render mode 3: an OCR layer under a scan)
``off_page_text``          most characters outside the rendered page
``latin_decoded_as_cjk``   characters decoded as Han whose glyphs advance like Latin letters
``cjk_decoded_as_latin``   Latin letters whose glyphs are full-width, square like Han
``text_missing_for_ink``   most of the page's dark ink lies outside every character box

The two decoding checks compare what a character *says* (its code point) with what the font
*draws* (its advance width against its height, which comes from the glyph program, not from
the ToUnicode map that lies): Han glyphs are square, Latin letters about half as wide.

Filters (the page is dropped, counted): ``blank_page`` (no text and next to no ink) and
``no_language`` (a text-layer page whose text is in none of the configured languages' scripts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.languages import profile, script_pattern

from .lines import TextLine, page_lines, reading_order
from .page import PageData
from .settings import PdfSettings

OCR_REASONS = ("no_text_layer", "unmapped_font", "private_use", "replacement_chars", "invisible_text",
               "off_page_text", "latin_decoded_as_cjk", "cjk_decoded_as_latin", "text_missing_for_ink")
# Decoding checks need this many characters of the script to judge.
MIN_SCRIPT_CHARS = 8
HAN_MIN_ASPECT = 0.7  # median width/height of glyphs decoded as Han: below this they are not Han
LATIN_MAX_ASPECT = 0.8  # median width/height of glyphs decoded as Latin letters: above this they are not


@dataclass
class Decision:
    use: str  # "text" (the text layer), "ocr" (the OCR stage reads the page) or "drop"
    reason: str | None = None  # why OCR or why dropped
    language: str | None = None
    lines: list[TextLine] | None = None


# Every white-space code point (all lie below U+3001): not text, whatever the layer says.
_SPACES = np.array([c for c in range(0x3001) if chr(c).isspace()])
_IN_SCRIPT: dict[str, dict[int, bool]] = {}  # script -> code point -> a letter of that script (memo)


def _letters_of(script: str, codes: np.ndarray) -> np.ndarray:
    """Which of ``codes`` are letters of ``script`` (through the language registry's script patterns)."""
    memo = _IN_SCRIPT.setdefault(script, {})
    pattern = script_pattern(script)
    listed = codes.tolist()
    for code in set(listed).difference(memo):
        memo[code] = bool(pattern.match(chr(code))) and chr(code).isalpha()
    return np.array([memo[code] for code in listed], dtype=bool)


def _aspect(boxes: np.ndarray, codes: np.ndarray, script: str) -> float | None:
    """The median width/height of the glyphs decoded as letters of ``script``; None for too few."""
    letters = _letters_of(script, codes) & (boxes[:, 3] > boxes[:, 1])
    if letters.sum() < MIN_SCRIPT_CHARS:
        return None
    x0, y0, x1, y1 = boxes[letters].T
    return float(np.median((x1 - x0) / (y1 - y0)))


def ocr_reason(page: PageData, settings: PdfSettings) -> str | None:
    """Why the page's text layer cannot be its transcription (see the module docstring), or None."""
    codes = page.codes
    visible = (codes > 32) & ~page.generated & ~np.isin(codes, _SPACES)
    if not visible.any():
        return "no_text_layer"
    codes = codes[visible]
    boxes = page.boxes[visible]
    bad = settings.max_bad_char_share
    if (page.map_error[visible] | (codes == 0)).mean() > bad:
        return "unmapped_font"
    if (((codes >= 0xE000) & (codes <= 0xF8FF)) | ((codes >= 0xF0000) & (codes <= 0x10FFFF))).mean() > bad:
        return "private_use"
    if ((codes == 0xFFFD) | (codes < 32)).mean() > bad:
        return "replacement_chars"
    if page.invisible[visible].mean() > settings.max_hidden_share:
        return "invisible_text"
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    if (~((cx >= 0) & (cx <= page.width) & (cy >= 0) & (cy <= page.height))).mean() > settings.max_hidden_share:
        return "off_page_text"
    han = _aspect(boxes, codes, "Han")
    if han is not None and han < HAN_MIN_ASPECT:
        return "latin_decoded_as_cjk"
    latin = _aspect(boxes, codes, "Latin")
    if latin is not None and latin > LATIN_MAX_ASPECT:
        return "cjk_decoded_as_latin"
    if page.ink_share > settings.blank_ink_share and page.ink_outside_text > settings.max_ink_outside_text:
        return "text_missing_for_ink"
    return None


def page_language(text: str, source_language: str, settings: PdfSettings) -> str | None:
    """The page's language: the configured one (English always among them, as the source language of
    the mixture) whose scripts write most of ``text`` (``auto``), or the source's own; None when that
    share is below ``min_language_share``."""
    candidates = {"en": ["Latin"], **settings.scripts} if source_language == "auto" else {
        source_language: settings.scripts.get(source_language) or (["Han"] if source_language == "zh" else ["Latin"])}
    best, best_share = None, 0.0
    for code, scripts in candidates.items():
        target, total = profile(tuple(scripts)).units(text)
        share = target / total if total else 0.0
        if share > best_share:
            best, best_share = code, share
    return best if best_share >= settings.min_language_share else None


def decide(page: PageData, source_language: str, settings: PdfSettings) -> Decision:
    """The page's fate (see the module docstring)."""
    reason = ocr_reason(page, settings)
    if reason == "no_text_layer" and page.ink_share <= settings.blank_ink_share:
        return Decision("drop", "blank_page")
    if reason is not None:
        return Decision("ocr", reason)
    lines = reading_order(page_lines(page.codes.tolist(), page.boxes.tolist(), page.generated.tolist(),
                                     page.invisible.tolist()))
    if not lines:
        return Decision("ocr", "no_text_layer")
    language = page_language("\n".join(ln.text for ln in lines), source_language, settings)
    if language is None:
        return Decision("drop", "no_language")
    return Decision("text", None, language, lines)
