"""One row per shard sample, whatever its shape: the row the Hub and Ray readers give.

A sample is ``<key>.json`` plus one member per image (``<key>.jpg``, ``<key>.1.png``, ... see
:mod:`shards.schema`). WebDataset readers group members by key and name each column after the
member's extension, so a two-image sample has a ``1.jpg`` or ``1.png`` column that a single-image
one lacks, and a text-only sample has no image column at all: no fixed set of columns fits every
shape. :func:`sample_row` turns such a group into the same four columns for every sample:

- ``__key__`` (str): the sample id; ``__url__`` (str): the shard it came from;
- ``json`` (dict): the sample's JSON as written, ``conversations`` (every turn) and ``meta`` included;
- ``images`` (list of bytes): every image's original bytes in ``<image>`` placeholder order
  (the order of ``json["meta"]["images"]``), ``[]`` for a text-only sample.
"""

from __future__ import annotations

import json
from typing import Any

_SPECIAL = ("__key__", "__url__", "__local_path__")


def sample_row(sample: dict[str, Any]) -> dict[str, Any]:
    """``{"__key__", "__url__", "json", "images"}`` from a WebDataset sample of raw member bytes.

    ``sample`` maps member extensions (``json``, ``jpg``, ``1.png``...) to their bytes, plus
    ``__key__`` and ``__url__``. A missing or unreadable ``json``, an image it lists that is not
    there, or an image member it does not list raise ``ValueError`` naming the shard, sample and member.
    """
    key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
    where = f"{url}: sample {key}"
    if "json" not in sample:
        raise ValueError(
            f"{where}: no json member (members: {sorted(k for k in sample if k not in _SPECIAL)})"
        )
    data = sample["json"]
    try:
        record = data if isinstance(data, dict) else json.loads(data)
        members = [entry["member"] for entry in record["meta"]["images"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{where}: json member is not a vlmix sample ({error!r})") from error
    missing = [member for member in members if member not in sample]
    if missing:
        raise ValueError(f"{where}: image member {key}.{missing[0]} listed in meta.images is missing")
    unlisted = sorted(set(sample) - set(members) - {"json", *_SPECIAL})
    if unlisted:
        raise ValueError(f"{where}: member {key}.{unlisted[0]} is not listed in meta.images")
    return {"__key__": key, "__url__": url, "json": record, "images": [sample[member] for member in members]}
