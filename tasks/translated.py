"""Joining the translation stage's output back onto drafts, to make translated variants.

Input contract (one or more Parquet files under ``<root>/translate/<source>/``; column names are
settings, :class:`TranslationColumns`): one row per translated text,

- ``key``: the sample key in the source;
- ``target_language``: language code of the translation;
- ``field``: which text of the sample (``caption``, ``objects.<i>.name``, ``ref_exps.<i>``, or
  ``conversations``, a whole conversation as JSON turns; :mod:`tasks.draft`);
- ``text``: the translation;
- ``error`` (optional): non-empty when the stage flagged the row (empty output, wrong script, a
  conversation's lost placeholder or changed number, ...).

The stage writes one part per task unit (``part-<unit>.parquet`` per target), and the builder of a
unit reads only that unit's parts. A variant is made only when every text field of the draft has a
good translation; otherwise it is counted out, never emitted half-translated:
``translation_missing``; ``translation_flagged`` (a caption, name or expression);
``translation_flagged:<error>`` (a conversation, flagged whole by the stage, with the stage's reason:
``translation_flagged:number_changed``...); ``translation_turns_changed`` /
``translation_markup_changed`` (a conversation that came back with other turns, speakers or markup
than its source's, :func:`tasks.markup.conversation_change`).
"""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
from pydantic import Field

from pipelines._model import ConfigModel
from pipelines.storage import Storage
from tasks.draft import Draft
from tasks.markup import CONVERSATIONS, conversation_change

TRANSLATE_DIR = "translate"


class TranslationColumns(ConfigModel):
    """Column names of the translation stage's Parquet rows."""

    key: str = "key"
    target_language: str = "target_language"
    field: str = Field("field", description="which text of the sample the row translates")
    text: str = "text"
    error: str | None = Field(
        "error", description="non-empty = flagged; None if the files have no such column"
    )


# (key, language) -> {field: (translated text or None when flagged, the stage's reason or None)}
Translations = dict[tuple[str, str], dict[str, tuple[str | None, str | None]]]


def require_translations(storage: Storage, source: str) -> None:
    """Fail at once (a data error) if the translation stage wrote nothing for ``source``."""
    if not storage.glob(storage.path(TRANSLATE_DIR, source, "*", "part-*.parquet")):
        raise FileNotFoundError(
            f"source {source!r} is to be translated but {storage.path(TRANSLATE_DIR, source)} holds no "
            "Parquet output; run the translation stage first"
        )


def load_unit_translations(storage: Storage, source: str, unit: str, columns: TranslationColumns) -> Translations:
    """The translation rows of one unit of ``source`` (every target), indexed by sample key and language.

    Rows of conversation pieces (``turns.<t>.<p>``, as vlmix cut conversations before they were
    translated whole) fail the unit, naming the part: the builder no longer reads them."""
    # The translation stage writes <source>/<target>/part-<unit>.parquet (its inputs sit in <source>/_input/).
    paths = storage.glob(storage.path(TRANSLATE_DIR, source, "*", f"part-{unit}.parquet"))
    wanted = [columns.key, columns.target_language, columns.field, columns.text]
    if columns.error:
        wanted.append(columns.error)
    found: Translations = {}
    for path in paths:
        table = pq.read_table(path, columns=wanted, filesystem=storage.fs).to_pydict()
        if any(str(name).startswith("turns.") for name in table[columns.field]):
            raise ValueError(
                f"{path}: rows of field turns.<t>.<p> are conversation pieces as vlmix cut them before "
                "conversations were translated whole (field 'conversations'); remove "
                f"{storage.path(TRANSLATE_DIR, source)} (its _input and every target) and run the "
                "translation stage again"
            )
        errors = table[columns.error] if columns.error else [None] * len(table[columns.key])
        for key, language, name, text, error in zip(
            table[columns.key],
            table[columns.target_language],
            table[columns.field],
            table[columns.text],
            errors,
            strict=True,
        ):
            good = not error and bool(text and text.strip())
            found.setdefault((str(key), str(language)), {})[str(name)] = (
                (text.strip(), None) if good else (None, str(error) if error else "empty_output"))
    return found


def translated_texts(draft: Draft, language: str, translations: Translations, drops: Counter) -> dict | None:
    """The draft's texts in ``language``, or ``None`` (counted) if any of them is not translated."""
    rows = translations.get((draft.key, language), {})
    texts = {}
    for name in draft.texts:
        if name not in rows:
            drops["translation_missing"] += 1
            return None
        text, error = rows[name]
        if name == CONVERSATIONS:  # translated whole or flagged whole: counted with the stage's reason
            problem = f"flagged:{error}" if text is None else conversation_change(draft.texts[name], text)
            if problem:
                drops[f"translation_{problem}"] += 1
                return None
        elif text is None:
            drops["translation_flagged"] += 1
            return None
        texts[name] = text
    return texts
