"""Joining the translation stage's output back onto drafts, to make translated variants.

Input contract (one or more Parquet files under ``<root>/translate/<source>/``; column names are
settings, :class:`TranslationColumns`): one row per translated text,

- ``key``: the sample key in the source;
- ``target_language``: language code of the translation;
- ``field``: which text of the sample (``caption``, ``objects.<i>.name``, ``ref_exps.<i>``;
  :mod:`pipelines.tasks.draft`);
- ``text``: the translation;
- ``error`` (optional): non-empty when the stage flagged the row (empty output, wrong script, ...).

A variant is made only when every text field of the draft has a good translation; otherwise it is
counted out (``translation_flagged`` / ``translation_missing``), never emitted half-translated.
"""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
from pydantic import Field

from pipelines._model import ConfigModel
from pipelines.storage import Storage
from pipelines.tasks.draft import Draft

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


# (key, language) -> {field: translated text or None when flagged}
Translations = dict[tuple[str, str], dict[str, str | None]]


def load_translations(storage: Storage, source: str, columns: TranslationColumns) -> Translations:
    """Every translation row of ``source``, indexed by sample key and target language."""
    # The translation stage writes <source>/<target>/part-*.parquet (its inputs sit in <source>/_input/).
    paths = storage.glob(storage.path(TRANSLATE_DIR, source, "*", "part-*.parquet"))
    if not paths:
        raise FileNotFoundError(
            f"source {source!r} is to be translated but {storage.path(TRANSLATE_DIR, source)} holds no "
            "Parquet output; run the translation stage first"
        )
    wanted = [columns.key, columns.target_language, columns.field, columns.text]
    if columns.error:
        wanted.append(columns.error)
    found: Translations = {}
    for path in paths:
        table = pq.read_table(path, columns=wanted, filesystem=storage.fs).to_pydict()
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
            found.setdefault((str(key), str(language)), {})[str(name)] = text.strip() if good else None
    return found


def translated_texts(draft: Draft, language: str, translations: Translations, drops: Counter) -> dict | None:
    """The draft's texts in ``language``, or ``None`` (counted) if any of them is not translated."""
    rows = translations.get((draft.key, language), {})
    texts = {}
    for name in draft.texts:
        if name not in rows:
            drops["translation_missing"] += 1
            return None
        if rows[name] is None:
            drops["translation_flagged"] += 1
            return None
        texts[name] = rows[name]
    return texts
