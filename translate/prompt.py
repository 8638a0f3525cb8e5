"""The translation prompt of the InternVL 1.5 report (Figure 5), as OpenAI-style chat messages.

The system text is the figure's, character for character (curly quotes around “translationese.”,
the curly apostrophe in original’s); ``{language}`` is the target language's English name and
``{text}`` the English source. :data:`PROMPT_VERSION` is derived from the templates, so editing
them changes the version and invalidates every cached translation made with the old wording.

>>> build_messages("A dog on a beach.", "Chinese")[1]
{'role': 'user', 'content': 'Text for translation: A dog on a beach.'}
"""

from __future__ import annotations

import hashlib

SYSTEM_TEMPLATE = (
    "You are a translator proficient in English and {language}. Your task is to translate the following "
    "English text into {language}, focusing on a natural and fluent result that avoids \u201ctranslationese."
    "\u201d Please consider these points:"
    "1. Keep proper nouns, brands, and geographical names in English."
    "2. Retain technical terms or jargon in English, but feel free to explain in {language} if necessary."
    "3. Use {language} idiomatic expressions for English idioms or proverbs to ensure cultural relevance."
    "4. Ensure quotes or direct speech sound natural in {language}, maintaining the original\u2019s tone."
    "5. For acronyms, provide the full form in {language} with the English acronym in parentheses."
)
USER_PREFIX = "Text for translation: "
USER_TEMPLATE = USER_PREFIX + "{text}"

PROMPT_VERSION = "fig5-" + hashlib.sha256(f"{SYSTEM_TEMPLATE}\x00{USER_TEMPLATE}".encode()).hexdigest()[:12]


def build_messages(text: str, language: str) -> list[dict]:
    """The system and user messages that ask for ``text`` in ``language`` (e.g. ``"Chinese"``)."""
    # str.replace, not str.format: an English caption may hold braces of its own.
    system = SYSTEM_TEMPLATE.replace("{language}", language)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": USER_TEMPLATE.replace("{text}", text)},
    ]


# Not the report's: vlmix's request for a back-translation, which scores a translation (translate/quality.py).
BACK_SYSTEM_TEMPLATE = (
    "You are a translator proficient in {language} and English. Translate the following {language} text "
    "into English, faithfully, keeping every object, number and name. Answer with the translation only."
)
BACK_PROMPT_VERSION = "back-" + hashlib.sha256(f"{BACK_SYSTEM_TEMPLATE}\x00{USER_TEMPLATE}".encode()).hexdigest()[:12]


def build_back_messages(text: str, language: str) -> list[dict]:
    """The messages that ask for ``text``, written in ``language``, in English."""
    return [
        {"role": "system", "content": BACK_SYSTEM_TEMPLATE.replace("{language}", language)},
        {"role": "user", "content": USER_TEMPLATE.replace("{text}", text)},
    ]
