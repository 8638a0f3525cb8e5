"""Detection and grounding samples: ``<ref>name</ref><box>[[x1, y1, x2, y2]]</box>``, 0..1000 scale.

Three inputs, one output format:

- raw img2dataset shards whose URL list carried an ``objects`` column: a JSON list of
  ``{"name": str, "bbox": [x, y, w, h]}`` in pixels of the original image (COCO style);
- COCO-style annotation files (Objects365's ``images``/``annotations``/``categories``) beside a
  local image folder (:mod:`tasks.coco`);
- GRIT-style records, whose ``ref_exps`` are ``[start, end, x1, y1, x2, y2, score]`` with the
  expression ``caption[start:end]`` and corners as fractions of the image size, either as a
  column of a raw shard or as JSONL beside an image folder.

Coordinates are scaled by the size the annotation was made on (``original_width``/``height`` for
downloaded images), so a download that kept the aspect ratio keeps the boxes right; one that did
not is counted out as ``aspect_changed``. Boxes left empty after scaling are dropped and counted
(``object:degenerate_box``); a record left with no box is dropped (``no_objects``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from functools import partial

from pipelines.layout.raw import RawSample, iter_raw_shard, raw_picture
from pipelines.layout.task_table import human_turn
from pipelines.storage import Storage
from tasks.draft import Draft
from tasks.prompts import PromptPools

SCALE = 1000
_ASPECT_TOLERANCE = 0.02  # relative; img2dataset's rounding of a resized side stays well inside it


def scale_box(x1: float, y1: float, x2: float, y2: float, width: float, height: float) -> list[int] | None:
    """Pixel corners -> integers in 0..1000 of the image size; ``None`` if nothing is left."""
    box = [
        round(min(max(x1 / width, 0.0), 1.0) * SCALE),
        round(min(max(y1 / height, 0.0), 1.0) * SCALE),
        round(min(max(x2 / width, 0.0), 1.0) * SCALE),
        round(min(max(y2 / height, 0.0), 1.0) * SCALE),
    ]
    return box if box[2] > box[0] and box[3] > box[1] else None


def grounded(name: str, boxes: list[list[int]]) -> str:
    """``<ref>name</ref><box>[[x1, y1, x2, y2], ...]</box>``, the InternVL grounding syntax."""
    return f"<ref>{name}</ref><box>{json.dumps(boxes, separators=(', ', ':'))}</box>"


def render_objects(
    boxes: list[list[int]],
    texts: dict[str, str],
    language: str,
    prompts: PromptPools,
    identity: tuple[str, ...],
):
    """One answer line per object name, in order of first appearance, with all its boxes."""
    by_name: dict[str, list[list[int]]] = {}
    for index, box in enumerate(boxes):
        by_name.setdefault(texts[f"objects.{index}.name"], []).append(box)
    answer = "\n".join(grounded(name, name_boxes) for name, name_boxes in by_name.items())
    return [human_turn(prompts.choose("detect", language, *identity)), {"from": "gpt", "value": answer}]


def render_refs(
    boxes: list[list[int]],
    texts: dict[str, str],
    language: str,
    prompts: PromptPools,
    identity: tuple[str, ...],
):
    """One question/answer turn per referring expression."""
    turns: list[dict[str, str]] = []
    for index, box in enumerate(boxes):
        expression = texts[f"ref_exps.{index}"]
        prompt = prompts.choose("refer", language, *identity, str(index), expression=expression)
        turns.append(human_turn(prompt) if index == 0 else {"from": "human", "value": prompt})
        turns.append({"from": "gpt", "value": grounded(expression, [box])})
    return turns


def objects_texts_and_boxes(
    objects: list[dict], width: float, height: float, max_objects: int, drops: Counter
) -> tuple[dict[str, str], list[list[int]]]:
    """COCO-style ``{"name", "bbox": [x, y, w, h]}`` objects -> names by field and scaled boxes."""
    texts: dict[str, str] = {}
    boxes: list[list[int]] = []
    for obj in objects:
        name = " ".join(str(obj.get("name") or "").split())
        bbox = obj.get("bbox")
        if not name or not isinstance(bbox, list | tuple) or len(bbox) != 4:
            drops["object:malformed"] += 1
            continue
        x, y, w, h = (float(v) for v in bbox)
        box = scale_box(x, y, x + w, y + h, width, height)
        if box is None:
            drops["object:degenerate_box"] += 1
            continue
        if len(boxes) >= max_objects:
            drops["object:over_max_objects"] += 1
            continue
        texts[f"objects.{len(boxes)}.name"] = name
        boxes.append(box)
    return texts, boxes


def refs_texts_and_boxes(caption: str, ref_exps: list, max_refs: int, drops: Counter):
    """GRIT ``[start, end, x1, y1, x2, y2, score]`` (fractions) -> expressions by field and boxes."""
    texts: dict[str, str] = {}
    boxes: list[list[int]] = []
    for ref in ref_exps:
        if not isinstance(ref, list | tuple) or len(ref) < 6:
            drops["object:malformed"] += 1
            continue
        start, end = int(ref[0]), int(ref[1])
        expression = " ".join(caption[start:end].split())
        box = scale_box(*(float(v) for v in ref[2:6]), 1.0, 1.0)
        if not expression or box is None:
            drops["object:degenerate_box" if expression else "object:empty_expression"] += 1
            continue
        if len(boxes) >= max_refs:
            drops["object:over_max_objects"] += 1
            continue
        texts[f"ref_exps.{len(boxes)}"] = expression
        boxes.append(box)
    return texts, boxes


def _json_column(value, drops: Counter, name: str):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            drops[f"{name}_invalid_json"] += 1
            return None
    if not isinstance(value, list):
        drops[f"{name}_missing"] += 1
        return None
    return value


def detection_drafts(
    storage: Storage, source: str, shard: str, max_objects: int, images, drops: Counter
) -> Iterator[Draft]:
    """Drafts from one raw shard whose records carry ``objects`` (boxes) or ``ref_exps`` (GRIT)."""
    for raw in iter_raw_shard(storage, source, shard):
        picture = raw_picture(storage, raw, images, drops)
        if picture is None:
            continue
        draft = _raw_detection_draft(raw, picture, max_objects, drops)
        if draft is not None:
            yield draft


def _raw_detection_draft(raw: RawSample, picture, max_objects: int, drops: Counter) -> Draft | None:
    width, height = picture.width, picture.height
    original_width = float(raw.meta.get("original_width") or width)
    original_height = float(raw.meta.get("original_height") or height)
    if abs((width / height) / (original_width / original_height) - 1) > _ASPECT_TOLERANCE:
        drops["aspect_changed"] += 1
        return None
    if "ref_exps" in raw.meta:
        ref_exps = _json_column(raw.meta["ref_exps"], drops, "ref_exps")
        if ref_exps is None:
            return None
        texts, boxes = refs_texts_and_boxes(raw.caption, ref_exps, max_objects, drops)
        render = partial(render_refs, boxes)
    else:
        objects = _json_column(raw.meta.get("objects"), drops, "objects")
        if objects is None:
            return None
        texts, boxes = objects_texts_and_boxes(objects, original_width, original_height, max_objects, drops)
        render = partial(render_objects, boxes)
    if not boxes:
        drops["no_objects"] += 1
        return None
    url = str(raw.meta.get("url") or "")
    return Draft(raw.key, [picture], texts, render, url)
