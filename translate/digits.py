"""Do the numbers of an English source survive in its translation? (validation's ``number_mismatch``)

A count, a time, a year, a price or a jersey number that a translation changes is wrong however fluent
the rest is, and a score over the whole sentence hardly sees one changed word (chrF scored "two dogs"
for "three dogs" 65 and "10 am" for "9 am" 80: translate/README.md). So the digits are checked
deterministically:

- both texts are normalised with NFKC, so full-width digits and separators (``３``, ``１２，０００``,
  ``３．５``), as Chinese and Japanese text often writes them, read as ASCII (``3``, ``12,000``, ``3.5``);
  so do other decimal digits and circled ones (``①`` is ``1``);
- a number is a run of digits with ``.`` or ``,`` between digit groups; a comma is a thousands
  separator only where the groups after it have three digits (``12,000`` is ``12000``), otherwise it
  separates two numbers (``3,5`` as a list is ``3`` and ``5``: "房间3，5和7");
- every distinct number of the source must be in the translation, written in digits or, for whole
  numbers up to 99, in Chinese/Japanese numerals (``3`` as ``三``, ``2`` as ``两``/``二``, ``12`` as
  ``十二``, ``0`` as ``零``/``〇``): "3 dogs" may come back as "三只狗", not as "四只狗".
  Numbers the translation adds are allowed ("two dogs" as "2只狗").

What this does not catch: numbers written as words in the source ("three dogs" as "两只狗" has no digit
to check: that is left to the quality score); a number repeated in the source and given once (set, not
multiset: "猫和狗各3只" for "3 cats and 3 dogs" is right); and a small numeral found elsewhere in the
translation (``一`` of ``一起``, ``三`` of ``三明治``) passes for a lost digit. It flags correct
translations that rewrite a number: ``1万`` for ``10,000``, ``20世纪90年代`` for ``the 1990s``, ``9点``
for ``9:00`` (the ``00`` is gone). Turn it off with ``translation.stage.validation.check_numbers: false``.

>>> missing_numbers("The sign says the store opens at 9 am.", "牌子上写着商店早上10点开门。")
['9']
>>> missing_numbers("Room 12,000 has 3 beds.", "１２０００号房间有三张床。")
[]
"""

from __future__ import annotations

import re
import unicodedata

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*", re.ASCII)
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DIGITS = "零一二三四五六七八九"


def numbers(text: str) -> set[str]:
    """The distinct numbers written in digits in ``text``, normalised (``１２，０００`` -> ``12000``)."""
    return set(number_list(text))


def number_list(text: str) -> list[str]:
    """Every number written in digits in ``text``, in order and repeated as written, normalised as by
    :func:`numbers` (a conversation's pieces are held to the same numbers as a multiset)."""
    found = []
    for match in _NUMBER.finditer(unicodedata.normalize("NFKC", text)):
        token = match.group()
        parts = [token.replace(",", "")] if _THOUSANDS.fullmatch(token) else token.split(",")
        found.extend(_canonical(part) for part in parts if part)
    return found


def _canonical(number: str) -> str:
    """Leading zeros dropped from the whole part (``09`` is ``9``: "09:00" and "9:00" keep the hour)."""
    whole, dot, rest = number.partition(".")
    return (whole.lstrip("0") or "0") + dot + rest


def numerals(value: str) -> set[str]:
    """How Chinese and Japanese write a whole number up to 99 in numerals (none for others)."""
    if not value.isdigit() or int(value) > 99:
        return set()
    number = int(value)
    if number < 10:
        forms = {_DIGITS[number]}
        forms.update({0: {"〇"}, 2: {"两", "兩"}}.get(number, set()))
        return forms
    tens, units = divmod(number, 10)
    head = ("" if tens == 1 else _DIGITS[tens]) + "十"
    return {head + (_DIGITS[units] if units else ""), _DIGITS[tens] + "十" + (_DIGITS[units] if units else "")}


def missing_numbers(source: str, translation: str) -> list[str]:
    """The source's numbers the translation lost (sorted; empty when every one survived)."""
    kept = numbers(translation)
    normalised = unicodedata.normalize("NFKC", translation)
    lost = []
    for value in sorted(numbers(source)):
        if value not in kept and not any(form in normalised for form in numerals(value)):
            lost.append(value)
    return lost
