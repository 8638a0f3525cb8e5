"""What a tiny published copy is, and the writers' helpers (:mod:`tests.tasks.finetune_inputs`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


@dataclass
class Published:
    """Where one tiny published copy lies: ``locations`` and ``image_root`` as a config names them."""

    root: Path
    locations: list[str]
    image_root: Path | None = None
    missing_images: list[str] = field(default_factory=list)  # referenced but deliberately absent
    beside: list[str] = field(default_factory=list)  # companion files read through `locations` (VQA's answers)


def _image(path: Path, size: tuple[int, int] = (64, 48), colour: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", size, (colour, 120, 200 - colour % 150)).save(path, format=fmt)


def _json(path: Path, payload) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def _jsonl(path: Path, records: list) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)
