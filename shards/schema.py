"""The JSON of one sample in the shards, and its encoding.

``<key>.json`` = ``{"id", "source", "task", "language", "width", "height", "conversations",
"meta"}``; ``conversations`` is the public InternVL annotation format (alternating human/gpt turns,
the first one starting with ``<image>\\n``). ``meta`` has the same keys in every sample, so Arrow
readers (``datasets``, ``ray.data``) infer one schema for the whole mixture:

- ``source_key``: the sample's key in its source;
- ``url``: where the image was downloaded from ("" for local files);
- ``image_sha256``: sha256 of the image member's bytes;
- ``repeat``: 0 for a sample's first use in the mixture, k for its k-th repeat;
- ``original_language`` / ``original_text``: for a translated sample, the language and answer
  text it was translated from (``original_text`` is "" when the sample is not a translation).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Turn(_Strict):
    speaker: Literal["human", "gpt"] = Field(alias="from")
    value: str


class SampleMeta(_Strict):
    source_key: str
    url: str
    image_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    repeat: int = Field(ge=0)
    original_language: str
    original_text: str


class SampleRecord(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    source: str
    task: str
    language: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    conversations: list[Turn] = Field(min_length=2)
    meta: SampleMeta

    @model_validator(mode="after")
    def _conversation_shape(self) -> SampleRecord:
        turns = self.conversations
        if len(turns) % 2 or any(t.speaker != ("human", "gpt")[i % 2] for i, t in enumerate(turns)):
            raise ValueError("conversations must alternate human, gpt, ... and end with gpt")
        if not turns[0].value.startswith("<image>\n"):
            raise ValueError("the first human turn must start with '<image>\\n'")
        if sum(t.value.count("<image>") for t in turns) != 1:
            raise ValueError("a single-image sample has exactly one '<image>' placeholder")
        return self


def encode_sample(row: dict, sample_id: str, repeat: int) -> bytes:
    """The ``.json`` member of a task-table row, compact and in a fixed key order."""
    record = {
        "id": sample_id,
        "source": row["source"],
        "task": row["task"],
        "language": row["language"],
        "width": row["width"],
        "height": row["height"],
        "conversations": [{"from": t["from"], "value": t["value"]} for t in row["conversations"]],
        "meta": {
            "source_key": row["key"],
            "url": row["url"] or "",
            "image_sha256": row["image_sha256"],
            "repeat": int(repeat),
            "original_language": row["original_language"] or row["language"],
            "original_text": row["original_text"] or "",
        },
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_sample(data: bytes) -> SampleRecord:
    """Parse and validate a ``.json`` member; raises ``pydantic.ValidationError``."""
    return SampleRecord.model_validate_json(data)
