"""Small shards in the final vlmix format, as the pipeline writes them (used by the trainer tests)."""

import io
import json
import random
from pathlib import Path

import numpy as np
import webdataset
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (230, 220, 40)}
SHAPES = ["square", "stripe", "frame"]


def _image(colour: str, shape: str, width: int, height: int) -> Image.Image:
    pixels = np.full((height, width, 3), 245, dtype=np.uint8)
    rgb = COLOURS[colour]
    if shape == "square":
        pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = rgb
    elif shape == "stripe":
        pixels[:, width // 3 : 2 * width // 3] = rgb
    else:
        pixels[: height // 8] = pixels[-height // 8 :] = rgb
    return Image.fromarray(pixels)


def write_shards(root: Path, n_samples: int = 24, per_shard: int = 8, seed: int = 0, sizes=None) -> Path:
    """``n_samples`` captioning samples over several shards, as the vlmix pipeline writes them."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    sizes = sizes or [(320, 240), (240, 320), (300, 300), (640, 200)]
    writer = None
    for i in range(n_samples):
        if i % per_shard == 0:
            if writer:
                writer.close()
            writer = webdataset.TarWriter(str(root / f"{i // per_shard:05d}.tar"))
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        width, height = sizes[i % len(sizes)]
        buffer = io.BytesIO()
        _image(colour, shape, width, height).save(buffer, format="JPEG" if i % 2 else "PNG")
        record = {
            "id": f"demo-{i:05d}",
            "source": "demo",
            "task": "captioning",
            "language": "en",
            "width": width,
            "height": height,
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe the image briefly."},
                {"from": "gpt", "value": f"A {colour} {shape} on a white background."},
            ],
            "meta": {},
        }
        writer.write(
            {"__key__": f"{i:06d}", "jpg" if i % 2 else "png": buffer.getvalue(), "json": json.dumps(record)}
        )
    writer.close()
    return root
