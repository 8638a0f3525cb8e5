"""The manifest counts what the stages before the mixer dropped: download, OCR and translation.

The storage root is left as a run leaves it: each downloaded source's counters in its raw folder,
the OCR and translation stages' markers written by :func:`flows.stages.run_stage` with the
summaries their stage functions return; then the mix stage's own call writes the manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from flows.config import validate_config
from pipelines.storage import Storage

DOWNLOAD = {"laion_en": {"filtered": {"too_small": 2}, "failed": {"timeout": 1, "not_found": 3}},
            "objects365": {"filtered": {}, "failed": {}}}
OCR = {"wukong_ocr": {"kept": 5, "dropped": {"no_text": 2}}, "synthdog": {"kept": 3, "dropped": {}}}
TRANSLATE = {"laion_en": {"zh": {"rows": 4, "translated": 3, "flagged": {"too_long": 1}},
                          "ja": {"rows": 4, "translated": 4, "flagged": {}}}}
EXPECTED = {
    "download": DOWNLOAD,
    "ocr": {"wukong_ocr": {"no_text": 2}, "synthdog": {}},
    "translate": {"laion_en/zh": {"too_long": 1}, "laion_en/ja": {}},
}


def _downloaded(storage: Storage) -> None:
    """Each source's ``_vlmix_download.json``, as the download stage writes it last."""
    from download.context import STATS_FILE, raw_folder
    from download.stats import DownloadStats

    for name, counts in DOWNLOAD.items():
        filtered, failed = Counter(counts["filtered"]), Counter(counts["failed"])
        stats = DownloadStats(name, urls=10, filtered=filtered, downloaded=10 - filtered.total() - failed.total(),
                              failed=failed, shards=1)
        storage.write_json(posixpath.join(raw_folder(storage, name), STATS_FILE), stats.to_json())


def _ran(config, stage: str, summary: dict) -> None:
    from flows.registry import before
    from flows.stages import run_stage, upstream_fingerprints

    run_stage(config, stage, lambda: summary, upstream_fingerprints(config, before(stage)))


def _task_table(storage: Storage, root: Path) -> None:
    """One small captioning table over real image files: the mixer's input."""
    from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table

    (root / "images").mkdir(parents=True)
    samples = []
    for i in range(6):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(buffer, "JPEG")
        data = buffer.getvalue()
        path = root / "images" / f"{i}.jpg"
        path.write_bytes(data)
        samples.append(TaskSample(source="laion_en", key=f"{i:06d}", task="captioning", language="en",
                                  images=[Picture(ImageRef(str(path), 0, len(data)), "jpg",
                                                  hashlib.sha256(data).hexdigest(), 20, 16)],
                                  conversations=[human_turn("describe"), {"from": "gpt", "value": f"a photo {i}"}]))
    write_task_table(storage, "laion_en", "00000", samples)


def test_the_manifest_counts_the_download_ocr_and_translation_drops(tmp_path):
    from flows.registry import stage_drops
    from shards import ShardSettings, mix_and_write
    from shards.mix import MixSettings
    from translate.translator import PartStats

    root = tmp_path / "root"
    config = validate_config({"storage": {"root": str(root)}, "tasks": {"captioning": {"share": 1.0}},
                              "sources": [{"name": "laion_en", "kind": "url_list", "task": "captioning",
                                           "language": "en", "locations": ["urls.parquet"]}]})
    storage = Storage(config.storage.root, config.storage.options)
    assert stage_drops(storage) == {}  # nothing ran, nothing dropped
    _downloaded(storage)
    _ran(config, "ocr", OCR)  # as ocr_stage returns it
    _ran(config, "translate", {source: {target: PartStats(**counts).to_json() for target, counts in by_target.items()}
                               for source, by_target in TRANSLATE.items()})  # as translate_stage returns it
    assert stage_drops(storage) == EXPECTED

    _task_table(storage, root)
    manifest = mix_and_write(storage, tmp_path / "shards", MixSettings(total_samples=6, shares={"captioning": 1.0}),
                             ShardSettings(), stage_drops=stage_drops(storage))  # as mix_stage calls it
    written = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    for stage, drops in EXPECTED.items():
        assert manifest["drops"][stage] == written["drops"][stage] == drops, stage
