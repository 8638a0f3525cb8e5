"""The stage's input and output tables (Parquet, keyed by sample key and text field).

Input, one file per part, in either shape:

- *long*: columns ``key``, ``field``, ``text``: one row per English text of a sample
  (``field`` names the text: ``caption``, ``objects.3.name``, ``ref_exps.0``, ``conversations.1``...);
- *wide*: a ``key`` column and text columns (``text_columns``): a string column gives the field of
  its name, a list-of-strings column ``c`` the fields ``c.0``, ``c.1``, ... (img2dataset's raw
  ``NNNNN.parquet`` is wide: ``key`` + ``caption``; only its ``status == "success"`` rows are read).
  A ``conversations`` column of ``{from, value}`` turns (the task table's) gives one row per sample,
  field ``conversations``, its text the turns as JSON: translated whole (translate/conversation.py).
  Without ``text_columns``, ``caption`` and such a ``conversations`` column are read, where present.

Output: :data:`OUTPUT_SCHEMA`, one row per input text, under
``<root>/translate/<source>/<target>/part-<stem>.parquet`` (see translate/README.md).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.storage import Storage

TRANSLATE_DIR = "translate"

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # the sample key in the source
        pa.field("field", pa.string(), nullable=False),  # which text of the sample
        pa.field("target_language", pa.string(), nullable=False),  # language code, e.g. zh
        pa.field("text", pa.string()),  # the translation; null when flagged
        pa.field("error", pa.string()),  # null when translated; else the reason
        pa.field("source_language", pa.string(), nullable=False),  # always en: what was translated
        pa.field("source_text", pa.string()),  # the English original
        pa.field("raw_output", pa.string()),  # the model's answer as it came; null if none was asked
        pa.field("origin", pa.string(), nullable=False),  # request | run (deduplicated) | cache | none
        pa.field("model", pa.string(), nullable=False),
        pa.field("prompt_version", pa.string(), nullable=False),
        pa.field("quality", pa.float64()),  # the quality score (chrF 0-100 or encoder cosine -1..1); null if not scored
        pa.field("back_translation", pa.string()),  # the translation back in English; null if not asked
    ]
)


CONVERSATIONS = "conversations"  # the task table's column of {from, value} turns


class InputError(ValueError):
    """An input part does not have the columns the stage reads."""


@dataclass(frozen=True, slots=True)
class TextRow:
    key: str
    field: str
    text: str | None


def output_path(storage: Storage, source: str, target: str, part: str) -> str:
    return storage.path(TRANSLATE_DIR, source, target, f"part-{part}.parquet")


def part_name(path: str) -> str:
    """``.../00003.parquet`` -> ``00003``; ``part-00003.parquet`` -> ``00003``."""
    stem = posixpath.basename(path).split(".")[0]
    return stem.removeprefix("part-")


def read_input(storage: Storage, path: str, text_columns: list[str] | None = None) -> list[TextRow]:
    """The English texts of one input part, in file order."""
    table = storage.read_parquet(path)
    names = set(table.column_names)
    if {"key", "field", "text"} <= names and not text_columns:
        keys, fields, texts = (table[c].to_pylist() for c in ("key", "field", "text"))
        return [TextRow(str(k), str(f), t) for k, f, t in zip(keys, fields, texts, strict=True)]
    columns = text_columns or [c for c in ("caption", CONVERSATIONS) if c in names and _is_text(table, c)]
    missing = [c for c in ["key", *columns] if c not in names]
    if missing or not columns:
        raise InputError(
            f"{path}: expected columns key, field, text (long) or key + text columns (wide); "
            f"missing {missing or 'a text column'}; found {sorted(names)}"
        )
    if "status" in names:  # img2dataset's raw shard: only downloaded samples become samples
        table = table.filter(pc.equal(table["status"], "success"))
    rows: list[TextRow] = []
    data = {c: table[c].to_pylist() for c in ["key", *columns]}
    for index, key in enumerate(data["key"]):
        for column in columns:
            value = data[column][index]
            if column == CONVERSATIONS and _is_conversation(table.schema.field(column).type):
                turns = None if value is None else [{"from": t["from"], "value": t["value"]} for t in value]
                rows.append(TextRow(str(key), column, None if turns is None else json.dumps(turns, ensure_ascii=False)))
            elif isinstance(value, list):
                rows.extend(TextRow(str(key), f"{column}.{i}", item) for i, item in enumerate(value))
            else:
                rows.append(TextRow(str(key), column, value))
    return rows


def _is_conversation(kind: pa.DataType) -> bool:
    """A list of structs with string ``from`` and ``value``: the task table's ``conversations``."""
    if not pa.types.is_list(kind) and not pa.types.is_large_list(kind):
        return False
    item = kind.value_type
    return pa.types.is_struct(item) and {"from", "value"} <= {item.field(i).name for i in range(item.num_fields)}


def _is_text(table: pa.Table, column: str) -> bool:
    kind = table.schema.field(column).type
    return column != CONVERSATIONS or _is_conversation(kind) or pa.types.is_string(kind)
