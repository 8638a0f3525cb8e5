"""Task tables over real image files for the decontamination tests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage


def sample(root: Path, dataset: str, key: str, data: bytes | None, question: str, answer: str,
           task: str = "captioning", language: str = "en") -> TaskSample:
    images = []
    if data is not None:
        path = root / "images" / dataset / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with Image.open(io.BytesIO(data)) as decoded:
            width, height = decoded.size
        images = [Picture(ImageRef(f"images/{dataset}/{key}.jpg", 0, len(data)), "jpg",
                          hashlib.sha256(data).hexdigest(), width, height)]
    first = human_turn(question) if images else {"from": "human", "value": question}
    return TaskSample(dataset, key, task, language, images, [first, {"from": "gpt", "value": answer}])


def write(root: Path, dataset: str, samples: list[TaskSample], unit: str = "00000") -> Storage:
    storage = Storage(str(root))
    write_task_table(storage, dataset, unit, samples)
    return storage
