"""Export a shard directory for the official InternVL trainer: a meta JSON, JSONL, extracted images.

Layout written under ``out_dir``::

    images/<source>/<id>.<jpg|png|webp>  each distinct image once (repeats share the file; further
                                       images of a sample: <id>.1.jpg ...)
    annotations/<source>.jsonl         {"id", "image", "width", "height", "conversations"} a line
    meta.json                          {<source>: {"root", "annotation", "data_augment",
                                                   "repeat_time", "length"}}

Each source's JSONL holds its samples as they are in the mixture, repeats included, so
``repeat_time`` is 1 and the InternVL trainer sees exactly the mixture's proportions (its loader
accepts only whole repeat counts above 1). ``meta.json`` is written last: its presence marks a
complete export. The shards may be read from object storage (``s3://...``); the export itself is
written to a local folder, which is what the InternVL trainer reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipelines.storage import Storage
from shards.location import open_directory
from shards.manifest import read_manifest
from shards.reader import iter_samples


def export_internvl(
    shard_dir: str | Path | Storage, out_dir: str | Path, storage_options: dict[str, Any] | None = None
) -> Path:
    """Write the InternVL meta file, JSONL annotations and images; returns the meta file's path."""
    shards, out_dir = open_directory(shard_dir, storage_options), Path(out_dir).resolve()
    manifest = read_manifest(shards)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    lengths: dict[str, int] = {}
    annotations: dict[str, object] = {}
    try:
        for entry in manifest["shards"]:
            for key, members in iter_samples(shards.path(entry["name"]), shards.fs):
                record = json.loads(members["json"])
                source = record["source"]
                base_id = record["id"].rsplit("-r", 1)[0] if record["meta"]["repeat"] else record["id"]
                paths = []
                for entry in record["meta"]["images"]:
                    image = Path("images") / source / f"{base_id}.{entry['member']}"
                    target = out_dir / image
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        temporary = target.with_name(f".{target.name}.tmp")
                        temporary.write_bytes(members[entry["member"]])
                        os.replace(temporary, target)
                    paths.append(str(image.relative_to("images")))
                if source not in annotations:
                    annotations[source] = open(  # noqa: SIM115 (closed below)
                        out_dir / "annotations" / f".{source}.jsonl.tmp", "w", encoding="utf-8"
                    )
                # InternVL's format: one image as a path, several as a list, none: no image key.
                line = {"id": key, **({"image": paths[0] if len(paths) == 1 else paths} if paths else {}),
                        "width": record["width"], "height": record["height"],
                        "conversations": record["conversations"]}
                annotations[source].write(json.dumps(line, ensure_ascii=False) + "\n")
                lengths[source] = lengths.get(source, 0) + 1
    finally:
        for handle in annotations.values():
            handle.close()
    meta = {}
    for source in sorted(lengths):
        final = out_dir / "annotations" / f"{source}.jsonl"
        os.replace(out_dir / "annotations" / f".{source}.jsonl.tmp", final)
        meta[source] = {
            "root": str(out_dir / "images"),
            "annotation": str(final),
            "data_augment": False,
            "repeat_time": 1,
            "length": lengths[source],
        }
    path = out_dir / "meta.json"
    temporary = path.with_name(".meta.json.tmp")
    temporary.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path
