"""Is a model's answer a translation? Each rejected answer gets one reason; the row is kept, flagged.

Reasons, checked in this order (the first that applies is reported):

- ``empty_output``: nothing but whitespace came back;
- ``prompt_leftover``: the answer repeats the prompt's "Text for translation:";
- ``refusal``: the answer opens like a refusal ("I'm sorry", "I cannot", "抱歉", ...);
- ``identical_to_source``: the answer is the English source again;
- ``wrong_script``: too little of it is written in the target language's scripts;
- ``runaway_length``: far longer than the source, or cut off by the token budget;
- ``number_mismatch``: a number of the source is not in the answer (:mod:`translate.digits`: full-width
  digits and separators normalised, small numbers may come back as numerals; number words are not
  checked). A conversation's pieces are checked by their own stricter rule instead (``number_changed``).
"""

from __future__ import annotations

import regex

from pipelines.languages import ScriptProfile
from translate.digits import missing_numbers
from translate.prompt import USER_PREFIX
from translate.settings import ValidationSettings

REASONS = (
    "empty_output",
    "prompt_leftover",
    "refusal",
    "identical_to_source",
    "wrong_script",
    "runaway_length",
    "number_mismatch",
)


class Validator:
    """Checks answers for one target language."""

    def __init__(self, scripts: list[str], settings: ValidationSettings):
        self.profile = ScriptProfile(scripts)
        self.settings = settings
        self._refusal = regex.compile(
            "|".join(f"(?:{p})" for p in settings.refusal_patterns) or r"(?!)", regex.IGNORECASE
        )
        self._leftover = regex.compile(regex.escape(USER_PREFIX.strip()), regex.IGNORECASE)

    def reason(self, source: str, output: str, finish_reason: str | None = "stop",
               check_numbers: bool = True) -> str | None:
        """``None`` if ``output`` is accepted as the translation of ``source``, else the reason
        (``check_numbers=False``: the caller checks numbers its own way)."""
        answer = output.strip()
        if not answer:
            return "empty_output"
        if self._leftover.search(answer):
            return "prompt_leftover"
        if self._refusal.match(answer):
            return "refusal"
        if _comparable(answer) == _comparable(source):
            return "identical_to_source"
        if self.profile.share(answer) < self.settings.min_script_share:
            return "wrong_script"
        limit = self.settings.max_length_ratio * len(source.strip()) + self.settings.length_slack_chars
        if finish_reason == "length" or len(answer) > limit:
            return "runaway_length"
        if check_numbers and self.settings.check_numbers and missing_numbers(source, answer):
            return "number_mismatch"
        return None


def _comparable(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .!?\"'“”")
