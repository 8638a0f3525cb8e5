"""Task tables over real image files, made by the tests: the input of the mixer and shard writer."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage

# dataset -> (task, language, samples); two datasets share the OCR-large task, one is Chinese.
DATASETS = {
    "laion_en": ("captioning", "en", 160),
    "coyo-zh": ("captioning", "zh", 90),
    "objects365": ("detection", "en", 40),
    "wukong_ocr": ("ocr_large", "zh", 120),
    "laioncoco_ocr": ("ocr_large", "en", 100),
    "synthdog": ("ocr_small", "en", 60),
}


def make_image(index: int, image_format: str = "jpg") -> bytes:
    """A small, distinct, real image (noise seeded by ``index``)."""
    rng = np.random.default_rng(index)
    width, height = 24 + index % 17, 16 + index % 11
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG" if image_format == "png" else "JPEG", quality=80)
    return buffer.getvalue()


def build_task_tables(root: Path, datasets: dict = DATASETS, files_per_dataset: int = 2) -> Storage:
    """Write task tables for ``datasets``; each sample's image is its own file under root/images."""
    storage = Storage(str(root))
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    counter = 0
    for name, (task, language, count) in datasets.items():
        samples = []
        for i in range(count):
            counter += 1
            image_format = "png" if counter % 7 == 0 else "jpg"
            data = make_image(counter, image_format)
            path = images / f"{counter}.{image_format}"
            path.write_bytes(data)
            with Image.open(io.BytesIO(data)) as decoded:
                width, height = decoded.size
            samples.append(
                TaskSample(
                    source=name,
                    key=f"{i:06d}",
                    task=task,
                    language=language,
                    images=[Picture(ImageRef(str(path), 0, len(data)), image_format,
                                    hashlib.sha256(data).hexdigest(), width, height)],
                    conversations=[
                        human_turn(f"{task} prompt {i}"),
                        {"from": "gpt", "value": f"{name} answer {i} 文字"},
                    ],
                    url=f"http://127.0.0.1/{name}/{i}.{image_format}",
                )
            )
        per_file = -(-count // files_per_dataset)
        for unit in range(files_per_dataset):
            chunk = samples[unit * per_file : (unit + 1) * per_file]
            write_task_table(
                storage, name, f"{unit:05d}", chunk, drops={"empty_caption": unit}, inputs=len(chunk) + unit
            )
    return storage


@pytest.fixture(scope="session")
def task_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixroot")
    build_task_tables(root)
    return root


@pytest.fixture
def task_tables():
    """The builder itself, for tests that need their own datasets."""
    return build_task_tables
