"""Seeded generator of the fine-tuning demo's sources (configs/demo-finetune.yaml): one of each sample
shape of Table 1b, as InternVL JSONL files with their images, so the flow runs offline.

==========  =========================================================  ====================
set         looks like                                                 shape
==========  =========================================================  ====================
vqa         VQAv2 / GQA: one question on a picture of one shape        one image, one turn
chat        LLaVA-150K: three rounds about a picture (translated zh)   one image, multi-turn
multi       multi-image instructions: which of two pictures is what    two images
text        Alpaca / ShareGPT: Python questions answered with code     text only
==========  =========================================================  ====================

Everything lands under ``<directory>/finetune/<set>/`` (``<set>.jsonl`` and ``images/``), written
once per (seed, scale): a ``.done`` file holds them. The chat set's texts come from a closed
vocabulary, so :func:`finetune_translations` holds a Chinese reference for each of their pieces,
which the demo loads into the translation cache as it does for the pre-training demo.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from flows.demo.generate import COLOUR_WORDS, COLOURS, SHAPE_WORDS, SHAPES, _shape

BASE_COUNTS = {"vqa": 40, "chat": 24, "multi": 16, "text": 20}
CHAT = [  # (question, answer template) rounds; {c} colour, {s} shape; with their Chinese references
    ("What is in the picture?", "A {c} {s}.", "图中有什么？", "一个{c}{s}。"),
    ("What colour is it?", "It is {c}.", "它是什么颜色？", "它是{c}的。"),
    ("Is it a circle?", "{yes}", "它是圆形吗？", "{yes}"),
]
YES = {"en": ("Yes, it is a circle.", "No, it is not a circle."), "zh": ("是的，它是圆形。", "不，它不是圆形。")}
PROGRAMS = [  # (task, function name, body, what it computes) of the text-only set: fenced code answers
    ("adds two numbers", "add", "return a + b", lambda a, b: a + b),
    ("multiplies two numbers", "multiply", "return a * b", lambda a, b: a * b),
    ("returns the larger of two numbers", "larger", "return a if a > b else b", max),
    ("subtracts the second number from the first", "subtract", "return a - b", lambda a, b: a - b),
]


def generate_finetune(directory: str | Path, seed: int = 0, scale: float = 1.0) -> Path:
    """Write the four sets under ``<directory>/finetune`` (again only when seed or scale changed)."""
    root = Path(directory) / "finetune"
    stamp = {"seed": seed, "scale": scale}
    done = root / ".done"
    if done.exists() and json.loads(done.read_text()) == stamp:
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(f"finetune-{seed}")
    counts = {name: max(2, round(n * scale)) for name, n in BASE_COUNTS.items()}
    _write(root / "vqa", "vqa", [_vqa(root / "vqa", i, rng) for i in range(counts["vqa"])])
    _write(root / "chat", "chat", [_chat(root / "chat", i, rng) for i in range(counts["chat"])])
    _write(root / "multi", "multi", [_multi(root / "multi", i, rng) for i in range(counts["multi"])])
    _write(root / "text", "text", [_text(i, rng) for i in range(counts["text"])])
    done.write_text(json.dumps(stamp))
    return root


def finetune_translations(directory: str | Path, language: str) -> dict[str, str]:
    """Every piece of the chat set's turns (a question, or an answer: the translation stage leaves the
    ``<image>`` before the first question out of its pieces) -> its reference translation."""
    if language != "zh" or not (Path(directory) / "finetune" / ".done").exists():
        return {}
    memory = dict(zip(YES["en"], YES["zh"], strict=True))
    for question, answer, question_zh, answer_zh in CHAT:
        memory[question] = question_zh
        for colour, colour_zh in COLOUR_WORDS["zh"].items():
            for shape, shape_zh in SHAPE_WORDS["zh"].items():
                if "{yes}" not in answer:
                    memory[answer.format(c=colour, s=shape)] = answer_zh.format(c=colour_zh, s=shape_zh)
    return memory


def _picture(folder: Path, name: str, rng: random.Random) -> tuple[str, str, str]:
    """A picture of one shape on a plain background: (file name, colour, shape)."""
    background = rng.choice(("white", "grey", "black"))
    colour = rng.choice([c for c in COLOURS if c not in (background, "white", "grey", "black")])
    shape = rng.choice(SHAPES)
    size = (rng.randint(200, 640), rng.randint(200, 480))
    image = Image.new("RGB", size, COLOURS[background])
    side = min(size) // 2
    x, y = rng.randint(0, size[0] - side), rng.randint(0, size[1] - side)
    _shape(ImageDraw.Draw(image), shape, (x, y, x + side, y + side), COLOURS[colour])
    (folder / "images").mkdir(parents=True, exist_ok=True)
    image.save(folder / "images" / name, format="PNG" if name.endswith(".png") else "JPEG", quality=90)
    return name, colour, shape


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    return [turn for q, a in pairs for turn in ({"from": "human", "value": q}, {"from": "gpt", "value": a})]


def _vqa(folder: Path, i: int, rng: random.Random) -> dict:
    name, colour, shape = _picture(folder, f"{i:05d}.jpg", rng)
    question, answer = rng.choice([("What colour is the shape?", colour), ("What shape is shown?", shape)])
    return {"id": f"vqa-{i}", "image": name,
            "conversations": _turns((f"<image>\n{question}\nAnswer the question using a single word or phrase.",
                                     answer))}


def _chat(folder: Path, i: int, rng: random.Random) -> dict:
    name, colour, shape = _picture(folder, f"{i:05d}.png", rng)
    yes = YES["en"][0 if shape == "circle" else 1]
    rounds = [(q if k else f"<image>\n{q}", a.format(c=colour, s=shape, yes=yes)) for k, (q, a, _, _) in enumerate(CHAT)]
    return {"id": f"chat-{i}", "image": name, "conversations": _turns(*rounds)}


def _multi(folder: Path, i: int, rng: random.Random) -> dict:
    first, second = _picture(folder, f"{i:05d}-a.jpg", rng), _picture(folder, f"{i:05d}-b.jpg", rng)
    question = "Image-1: <image>\nImage-2: <image>\nWhat shape does each image show?"
    answer = f"Image-1 shows a {first[1]} {first[2]}; Image-2 shows a {second[1]} {second[2]}."
    return {"id": f"multi-{i}", "image": [first[0], second[0]], "conversations": _turns((question, answer))}


def _text(i: int, rng: random.Random) -> dict:
    task, function, body, compute = PROGRAMS[i % len(PROGRAMS)]
    a, b = i + 2, rng.randint(1, 9)  # every sample its own example, so none is a duplicate of another
    question = f"Write a Python function `{function}` that {task}."
    answer = (f"Here is `{function}`:\n\n```python\ndef {function}(a, b):\n    {body}\n```\n\n"
              f"For example, `{function}({a}, {b})` gives {compute(a, b)}.")
    return {"id": f"text-{i}", "conversations": _turns((question, answer))}


def _write(folder: Path, name: str, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    (folder / f"{name}.jsonl").write_text(lines, encoding="utf-8")
