"""Text contamination: normalised n-grams of questions and answers, hashed to 64 bits.

Normalising: NFKC (full-width letters, digits and punctuation to their plain forms), case folded,
every punctuation mark and symbol a separator. Tokens: each Chinese, Japanese (kana) or Korean
character is one token, any other run of letters and digits is one (a word). So an n-gram is ``n``
words of English or ``n`` characters of Chinese and Japanese, which have no spaces between words,
and a question reworded only by punctuation, width, case or line breaks has the same n-grams.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import regex

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}ー"
_TOKEN = regex.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_CHAR = regex.compile(rf"[{_CJK}]")
_SEPARATOR = regex.compile(r"[\p{P}\p{S}]+")
PLACEHOLDER = "<image>"


def tokens(text: str) -> list[str]:
    """The text's tokens after normalising (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text.replace(PLACEHOLDER, " ")).casefold()
    return _TOKEN.findall(_SEPARATOR.sub(" ", text))


def ngrams(text: str, n: int) -> list[str]:
    """Every run of ``n`` tokens (``n`` words, or ``n`` Chinese or Japanese characters), as text."""
    found = tokens(text)
    return [_join(found[i : i + n]) for i in range(len(found) - n + 1)]


def _join(run: list[str]) -> str:
    """Tokens as text: words apart, Chinese and Japanese characters together (unambiguous either way)."""
    out = run[0]
    for before, token in zip(run, run[1:], strict=False):
        out += token if _CHAR.fullmatch(before) and _CHAR.fullmatch(token) else " " + token
    return out


def ngram_hash(gram: str) -> int:
    return int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")


def hashes(texts: list[str], n: int) -> tuple[np.ndarray, list[str]]:
    """The 64-bit hashes of the n-grams of each text (n-grams never span two texts), and the n-grams."""
    grams = [gram for text in texts for gram in ngrams(text, n)]
    return np.array([ngram_hash(g) for g in grams], dtype=np.uint64), grams


def texts_of(value) -> list[str]:
    """The strings in a field's value: a string, a list of them, conversation turns (``value``), options."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        if "value" in value:
            return texts_of(value["value"])
        return [t for v in value.values() for t in texts_of(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in texts_of(v)]
    return [str(value)] if isinstance(value, (int, float)) else []
