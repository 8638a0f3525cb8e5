"""A small mixture of every sample shape vlmix writes: one image, two images over two turns, text only.

``captions`` (one image, repeat_time 1.5: some samples twice), ``pairs`` (two images, two
question-answer turns, Chinese, repeat_time 2: every sample twice) and ``chat`` (no image, two
turns, repeat_time 3).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage
from shards import ShardSettings, mix_and_write
from shards.mix import MixSettings
from tests.shards.conftest import make_image

COUNTS = {"captions": 12, "pairs": 6, "chat": 5}
REPEAT_TIME = {"captions": 1.5, "pairs": 2, "chat": 3}


def _picture(root: Path, index: int) -> Picture:
    image_format = "png" if index % 3 == 0 else "jpg"
    data = make_image(index, image_format)
    path = root / "images" / f"{index}.{image_format}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with Image.open(io.BytesIO(data)) as decoded:
        width, height = decoded.size
    return Picture(ImageRef(str(path), 0, len(data)), image_format, hashlib.sha256(data).hexdigest(), width, height)


def _samples(root: Path) -> dict[str, list[TaskSample]]:
    captions = [
        TaskSample(source="captions", key=f"{i:04d}", task="captioning", language="en",
                   images=[_picture(root, 1000 + i)],
                   conversations=[human_turn("Describe the image."), {"from": "gpt", "value": f"caption {i}"}])
        for i in range(COUNTS["captions"])
    ]
    pairs = [
        TaskSample(source="pairs", key=f"{i:04d}", task="multi_image", language="zh",
                   images=[_picture(root, 2000 + 2 * i), _picture(root, 2001 + 2 * i)],
                   conversations=[
                       {"from": "human", "value": "Image-1: <image>\nImage-2: <image>\n哪张更亮?"},
                       {"from": "gpt", "value": f"第{i}张更亮。"},
                       {"from": "human", "value": "Why?"},
                       {"from": "gpt", "value": f"because {i}"},
                   ])
        for i in range(COUNTS["pairs"])
    ]
    chat = [
        TaskSample(source="chat", key=f"{i:04d}", task="text_only", language="en", images=[],
                   conversations=[
                       {"from": "human", "value": f"What is {i} + {i}?"},
                       {"from": "gpt", "value": str(2 * i)},
                       {"from": "human", "value": "And doubled?"},
                       {"from": "gpt", "value": str(4 * i)},
                   ])
        for i in range(COUNTS["chat"])
    ]
    return {"captions": captions, "pairs": pairs, "chat": chat}


def build_shapes(root: Path, shards: Path, max_samples: int = 16) -> dict:
    """Task tables of the three datasets under ``root``, mixed into shards at ``shards``; the manifest."""
    storage = Storage(str(root))
    for name, samples in _samples(root).items():
        write_task_table(storage, name, "00000", samples)
    settings = MixSettings(shares={"captioning": 1, "multi_image": 1, "text_only": 1}, seed=5,
                           repeat_time=REPEAT_TIME)
    return mix_and_write(str(root), shards, settings, ShardSettings(max_samples=max_samples, report=False))
