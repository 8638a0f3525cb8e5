"""Shards holding every sample shape of the fine-tuning data, as the pipeline writes them."""

import hashlib
import io
import json
from pathlib import Path

import webdataset
from PIL import Image

SOLID = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}
CODE_ANSWER = "Use a loop:\n```python\nfor i in range(3):\n    print(i)\n```\nIt prints 0, 1 and 2."


def _png(colour: str, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), SOLID[colour]).save(buffer, format="PNG")
    return buffer.getvalue()


def _record(key: str, task: str, conversations: list, images: list[tuple[str, bytes, int, int]]) -> dict:
    return {
        "id": key, "source": task, "task": task, "language": "en",
        "width": images[0][2] if images else 0, "height": images[0][3] if images else 0,
        "conversations": [{"from": f, "value": v} for f, v in conversations],
        "meta": {"source_key": key, "url": "", "image_sha256": "0" * 64, "repeat": 0,
                 "original_language": "en", "original_text": "",
                 "images": [{"member": m, "width": w, "height": h, "sha256": hashlib.sha256(b).hexdigest()}
                            for m, b, w, h in images]},
    }


SAMPLES = {
    "vqa": ("general_qa", [("human", "<image>\nWhat colour is it?"), ("gpt", "Red.")], [("red", 448, 448)]),
    "multiturn": ("conversation", [("human", "<image>\nWhat is shown?"), ("gpt", "A green square."),
                                   ("human", "Is it round?"), ("gpt", "No, it has corners."),
                                   ("human", "How many corners?"), ("gpt", "Four.")], [("green", 448, 448)]),
    # Two 3x3-sized squares and a 2:1 image: alone a square makes 3x3 + thumbnail = 10 tiles; three
    # images share 12 tiles as InternVL does, at most 4 each: 2x2 + 1, 2x2 + 1 and 2x1 + 1 = 13.
    "multiimage": ("conversation", [("human", "Image-1: <image>\nImage-2: <image>\nImage-3: <image>\nWhich differ?"),
                                    ("gpt", "The third is wider and blue.")],
                   [("red", 1344, 1344), ("green", 1344, 1344), ("blue", 896, 448)]),
    "textonly": ("text_only", [("human", "How do I print 0 to 2 in Python?"), ("gpt", CODE_ANSWER)], []),
}


def write_shape_shard(root: Path, keys=tuple(SAMPLES)) -> Path:
    """One shard with a sample of each shape named in ``keys`` (members ``png``, ``1.png``, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    with webdataset.TarWriter(str(root / "00000.tar")) as sink:
        for key in keys:
            task, conversations, images = SAMPLES[key]
            encoded = [("png" if i == 0 else f"{i}.png", _png(c, w, h), w, h) for i, (c, w, h) in enumerate(images)]
            members = {member: data for member, data, _, _ in encoded}
            sink.write({"__key__": key, **members, "json": json.dumps(_record(key, task, conversations, encoded))})
    return root
