"""Field paths into a record, and image-path templates: how a format names the parts of a record.

A path is dotted: ``data.0.answers`` (a key, then a list index), ``sentences.*.raw`` (``*`` maps
over a list: the ``raw`` of every sentence), ``0:8`` (a slice of a list: the eight coordinates at the
head of a CSV row), ``ground_truth.$json.gt_parse.text_sequence`` (``$json`` parses the JSON string
found so far). The empty path is the record itself. Names that start with ``$`` and stand alone
are what the reader knows about the record rather than what it holds: ``$key`` (the key of an
object keyed by id; else the file's stem and the record's position in it), ``$stem``/``$parent``/
``$name`` (of a per-image annotation file), ``$row`` (a Parquet row's ordinal), ``$annotations``
(the items a json reader joined to the record).

A template is a string with ``{path}`` fields: ``"train_images/{$key}.jpg"``, ``"png/{image_index}.png"``.

>>> resolve({"sentences": [{"raw": "A cat."}, {"raw": "A dog."}]}, "sentences.*.raw")
['A cat.', 'A dog.']
>>> fill("png/{image_index}.png", {"image_index": 7})
'png/7.png'
"""

from __future__ import annotations

import json
import re
from typing import Any

MISSING = object()
_FIELD = re.compile(r"\{([^{}]+)\}")
_SLICE = re.compile(r"^(-?\d*):(-?\d*)$")


class PathError(ValueError):
    """A record does not have what a path names (the record is dropped as ``unreadable_record``)."""


def resolve(record: Any, path: str, extras: dict[str, Any] | None = None, default: Any = MISSING) -> Any:
    """The value at ``path`` in ``record``; ``default`` if a part is absent (PathError without one)."""
    if path in ("", None):
        return record
    if path.startswith("$") and "." not in path and path != "$json":
        if extras and path in extras:
            return extras[path]
        if default is MISSING:
            raise PathError(f"the reader gives no {path!r} for this record")
        return default
    try:
        return _walk(record, path.split("."))
    except PathError:
        if default is MISSING:
            raise
        return default


def _walk(value: Any, parts: list[str]) -> Any:
    for index, part in enumerate(parts):
        if part == "*":
            if not isinstance(value, list):
                raise PathError(f"'*' needs a list, found {type(value).__name__}")
            return [_walk(item, parts[index + 1:]) for item in value]
        if part == "$json":
            if not isinstance(value, str | bytes):
                raise PathError(f"'$json' needs a JSON string, found {type(value).__name__}")
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise PathError(f"'$json': not JSON ({err.msg})") from None
            continue
        value = _step(value, part)
    return value


def _step(value: Any, part: str) -> Any:
    if isinstance(value, dict):
        if part not in value:
            raise PathError(f"no field {part!r}")
        return value[part]
    if isinstance(value, list | tuple):
        sliced = _SLICE.match(part)
        if sliced:
            start, stop = (int(v) if v else None for v in sliced.groups())
            return list(value[start:stop])
        try:
            return value[int(part)]
        except (ValueError, IndexError):
            raise PathError(f"no item {part!r} in a list of {len(value)}") from None
    raise PathError(f"cannot take {part!r} of a {type(value).__name__}")


def fill(template: str, record: Any, extras: dict[str, Any] | None = None) -> str:
    """``template`` with each ``{path}`` replaced by the value there (PathError if one is absent)."""
    def value(match: re.Match) -> str:
        found = resolve(record, match.group(1), extras)
        if isinstance(found, dict | list) or found is None:
            raise PathError(f"template field {{{match.group(1)}}} is not a scalar")
        return str(int(found)) if isinstance(found, float) and found.is_integer() else str(found)

    return _FIELD.sub(value, template)


def is_template(text: str) -> bool:
    return bool(_FIELD.search(text))


def check_path(path: str) -> str | None:
    """Why ``path`` is no valid path, or None (config checks, before any record is read)."""
    if path.startswith("$") and "." not in path:
        return None if path in ("$key", "$stem", "$parent", "$name", "$row", "$annotations") else f"unknown reader field {path!r}"
    if any(part == "" for part in path.split(".")) and path != "":
        return f"empty part in path {path!r}"
    return None
