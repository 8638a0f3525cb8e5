"""Task tables over real image files for the decontamination tests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage


def sample(root: Path, dataset: str, key: str, data: bytes | list[bytes] | None, question: str, answer: str,
           task: str = "captioning", language: str = "en") -> TaskSample:
    """A sample of one image (``data``), several (a list: one placeholder each), or none."""
    datas = [] if data is None else data if isinstance(data, list) else [data]
    images = []
    for number, one in enumerate(datas):
        path = root / "images" / dataset / f"{key}-{number}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(one)
        with Image.open(io.BytesIO(one)) as decoded:
            width, height = decoded.size
        images.append(Picture(ImageRef(f"images/{dataset}/{key}-{number}.jpg", 0, len(one)), "jpg",
                              hashlib.sha256(one).hexdigest(), width, height))
    if len(images) == 1:
        first = human_turn(question)
    else:
        first = {"from": "human", "value": "".join(f"Image-{n + 1}: <image>\n" for n in range(len(images))) + question}
    return TaskSample(dataset, key, task, language, images, [first, {"from": "gpt", "value": answer}])


def write(root: Path, dataset: str, samples: list[TaskSample], unit: str = "00000") -> Storage:
    storage = Storage(str(root))
    write_task_table(storage, dataset, unit, samples)
    return storage
