"""Recognising a language by its script: the check that a translation is written in the target's script.

A target language is configured by its English name (for the prompt) and its Unicode scripts
(``flows.config.Language``); any script name the Unicode database knows works (``Han``,
``Hiragana``, ``Katakana``, ``Hangul``, ``Latin``, ``Cyrillic``, ``Arabic``, ``Devanagari``, ``Thai``...),
so adding a language needs no code.

The share of target-script text is counted in *units*, not characters, because the prompt asks the
model to keep proper nouns and acronyms in English: a Chinese caption ``Nike 运动鞋`` is three Han
units and one Latin unit. A unit is one character of a logographic or syllabic script written
without spaces (Han, kana, Bopomofo, Yi), and one run of letters for every other script (a word).

>>> ScriptProfile(["Han"]).share("一只狗在 Bondi 海滩上")
0.875
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import regex
from pydantic import Field

from pipelines._model import ConfigModel

# Scripts whose every character carries a morpheme or syllable: counted one unit per character.
_PER_CHARACTER = ("Han", "Hiragana", "Katakana", "Bopomofo", "Yi")
_LETTER_RUN = regex.compile(r"\p{L}\p{M}*(?:\p{L}\p{M}*)*")


class UnknownScript(ValueError):
    """A configured script name is not a Unicode script."""


@lru_cache(maxsize=256)
def script_pattern(name: str) -> regex.Pattern:
    """The pattern matching one character of the Unicode script ``name`` (e.g. ``"Hangul"``)."""
    try:
        # Script_Extensions, not Script: the kana prolongation mark ー and the iteration mark 々 are
        # "Common" by Script but belong to Katakana/Hiragana and Han by their extensions.
        return regex.compile(rf"\p{{Script_Extensions={name}}}")
    except regex.error as err:
        raise UnknownScript(
            f"{name!r} is not a Unicode script name (e.g. Han, Latin, Cyrillic, Hangul)"
        ) from err


class ScriptProfile:
    """The scripts of one target language, and how much of a text is written in them."""

    def __init__(self, scripts: Iterable[str]):
        self.scripts = tuple(scripts)
        if not self.scripts:
            raise UnknownScript("a language needs at least one script")
        self._target = regex.compile("|".join(script_pattern(s).pattern for s in self.scripts))
        self._per_character = regex.compile("|".join(script_pattern(s).pattern for s in _PER_CHARACTER))
        self._split = regex.compile(f"({self._per_character.pattern})")  # compiled once: units() is hot

    def units(self, text: str) -> tuple[int, int]:
        """(units in the target scripts, all letter units) of ``text``; digits and punctuation count none."""
        target = total = 0
        for run in _LETTER_RUN.findall(text):
            # A run of letters may mix scripts ("运动鞋Nike"): split it into per-character units and
            # runs of the remaining letters.
            for piece in self._split.split(run):
                if not piece:
                    continue
                total += 1
                target += bool(self._target.match(piece))
        return target, total

    def share(self, text: str) -> float:
        """Fraction of the letter units of ``text`` written in the target scripts (1.0 if there are none)."""
        target, total = self.units(text)
        return target / total if total else 1.0


@lru_cache(maxsize=64)
def profile(scripts: tuple[str, ...]) -> ScriptProfile:
    """A shared :class:`ScriptProfile` for ``scripts`` (its patterns are compiled once)."""
    return ScriptProfile(scripts)


def language_of(text: str, languages: dict[str, Iterable[str]]) -> str:
    """The language (code -> its scripts) whose scripts write most of ``text``; ``'en'`` when none does.

    A tie goes to the language with fewer scripts: Chinese (Han) and Japanese (kana + Han) tie on a
    text in Han alone, and kana tip a Japanese text to Japanese.

    >>> langs = {"zh": ["Han"], "ja": ["Hiragana", "Katakana", "Han"]}
    >>> language_of("一只猫", langs), language_of("猫がいる", langs), language_of("a cat", langs)
    ('zh', 'ja', 'en')
    """
    best, best_key = "en", (0, 0)
    for code, scripts in languages.items():
        scripts = tuple(scripts)
        units = profile(scripts).units(text)[0]
        key = (units, -len(scripts))
        if units and key > best_key:
            best, best_key = code, key
    return best


class Language(ConfigModel):
    """A target language: the name that goes into the Figure-5 prompt and how to recognise its script."""

    name: str = Field(description="English name used in the prompt, e.g. 'Chinese'")
    scripts: list[str] = Field(min_length=1, description="Unicode scripts of its text, e.g. ['Han']")
    prompts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="instructions written in this language, per purpose (caption, detect, refer, and "
        "for OCR samples transcribe, grounded); "
        "without them (and no built-in pool: en, zh) the English ones ask for an answer in it",
    )
