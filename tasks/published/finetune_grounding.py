"""Presets of Table 1b's grounding group: RefCOCO, RefCOCO+, RefCOCOg and Visual Genome's regions.

Both become ``grounding`` conversations (:mod:`tasks.published.finetune_builders`): a referring
expression or region description asked for, answered ``<ref>...</ref><box>[[x1, y1, x2, y2]]</box>``
on the 0..1000 grid.

**RefCOCO/+/g from the Hub's Parquet, not the official pickle.** The official release
(lichengunc/refer: ``refs(unc).p`` / ``refs(umd).p`` beside ``instances.json``) keeps its
expressions in a Python pickle, and unpickling a downloaded file runs whatever code it holds. The
Hub's ``jxu124/refcoco``, ``jxu124/refcocoplus`` and ``jxu124/refcocog`` carry the same refs, one
Parquet row per referred object (``ref_id``, ``image_id``, ``split``, ``sentences`` [{raw, sent}],
and the object's COCO annotation and image record as JSON strings ``raw_anns``/``raw_image_info``,
whose ``bbox`` [x, y, w, h] and ``width``/``height`` are used), ``image_path`` naming the COCO
2014 image as ``coco/train2014/<file>``. One conversation per referred object, each of its
expressions a turn.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.published.finetune_rules import register_all
from tasks.published.presets import Preset


def _json_field(record: dict, name: str) -> Any:
    value = record.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def _refcoco(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """A ref's expressions, each with the object's box, and the size the box is in."""
    if not isinstance(record, dict):
        return None
    annotation, image = _json_field(record, "raw_anns"), _json_field(record, "raw_image_info")
    if not isinstance(annotation, dict) or not isinstance(image, dict):
        return None
    sentences = record.get("sentences") or []
    regions = [{"text": str((s.get("raw") or s.get("sent") or "") if isinstance(s, dict) else "").strip(),
                "box": annotation.get("bbox")} for s in sentences]
    return {**record, "regions": regions, "width": image.get("width"), "height": image.get("height")}, extras


def _visual_genome(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """An image's region descriptions, each with its box [x, y, width, height] (pixels of the image)."""
    if not isinstance(record, dict) or not isinstance(record.get("regions"), list):
        return None
    regions = [{"text": " ".join(str(r.get("phrase") or "").split()),
                "box": [r.get("x"), r.get("y"), r.get("width"), r.get("height")]}
               for r in record["regions"] if isinstance(r, dict)]
    image_id = record.get("id", record.get("image_id"))
    return {**record, "image_id": image_id, "regions": regions}, extras


def _refcoco_preset(name: str, hub: str) -> Preset:
    return Preset(name, {
        "reader": "parquet", "key": "ref_id", "image": "image_path", "width": "width", "height": "height",
        "regions": "regions", "region_text": "text", "region_box": "box", "region_points": None,
        "build": "grounding",
    }, adapt=_refcoco, about=f"{hub} on the Hub (Parquet: ref_id, image_id, split, sentences[{{raw, sent}}], raw_anns "
       "and raw_image_info as COCO JSON, image_path); preferred over the official refs(*).p pickle, which "
       "unpickling would execute; one file per split (data/train-*.parquet); COCO 2014 train images",
        files={f"{name}/data/train-*.parquet": f"{hub} train split", "coco/train2014/": "COCO 2014 train images "
               "(`image_root`: the folder holding coco/)"})


PRESETS = [
    _refcoco_preset("refcoco", "jxu124/refcoco"),
    _refcoco_preset("refcoco_plus", "jxu124/refcocoplus"),
    _refcoco_preset("refcocog", "jxu124/refcocog"),
    Preset("visual_genome", {
        "reader": "json", "key": "image_id", "image": ["VG_100K/{image_id}.jpg", "VG_100K_2/{image_id}.jpg"],
        "regions": "regions", "region_text": "text", "region_box": "box", "region_points": None,
        "build": "grounding",
    }, adapt=_visual_genome, about="Visual Genome 1.2 (homes.cs.washington.edu/~ranjay/visualgenome/api.html): "
       "region_descriptions.json, an array of {id, regions: [{region_id, image_id, phrase, x, y, width, height}]} "
       "in pixels of the released images; images.zip and images2.zip unpack as VG_100K/ and VG_100K_2/ "
       "(<image id>.jpg, looked up in both)",
        files={"visual_genome/region_descriptions.json": "region descriptions",
               "visual_genome/VG_100K/, visual_genome/VG_100K_2/": "images (`image_root`: visual_genome/)"}),
]

register_all(PRESETS)
