"""Fine-tuning shapes from task tables to a training step: a repeat_time mixture of single-image,
multi-turn, several-image and text-only samples is written, verified, exported and trained on."""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, write_task_table
from pipelines.storage import Storage
from shards import ShardSettings, mix_and_write, verify
from shards.mix import MixSettings
from tests.shards.conftest import make_image

CODE = "Like this:\n```python\nprint(sum(range(4)))\n```\nIt prints 6."


def _picture(root, index: int) -> Picture:
    data = make_image(index)
    path = root / "images" / f"{index}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    width, height = Image.open(io.BytesIO(data)).size
    return Picture(ImageRef(str(path), 0, len(data)), "jpg", hashlib.sha256(data).hexdigest(), width, height)


def _tables(root) -> Storage:
    storage = Storage(str(root))
    shapes = {
        "vqa": ("general_qa", 12, 1, lambda i: [("<image>\nWhat is it?", f"Noise {i}.")]),
        "chat": ("conversation", 4, 1, lambda i: [("<image>\nDescribe.", f"Noise {i}."), ("Colourful?", "Yes."),
                                                   ("Sure?", "Quite.")]),
        "multi": ("conversation", 4, 2, lambda i: [("Image-1: <image>\nImage-2: <image>\nSame?", f"No, {i}.")]),
        "text": ("text_only", 5, 0, lambda i: [(f"Sum 0..3 in Python, take {i}?", CODE)]),
    }
    counter = 0
    for name, (task, count, n_images, rounds) in shapes.items():
        samples = []
        for i in range(count):
            pictures = []
            for _ in range(n_images):
                counter += 1
                pictures.append(_picture(root, counter))
            turns = [turn for q, a in rounds(i) for turn in ({"from": "human", "value": q}, {"from": "gpt", "value": a})]
            samples.append(TaskSample(source=name, key=f"{i:04d}", task=task, language="en", images=pictures,
                                      conversations=turns))
        write_task_table(storage, name, "00000", samples)
    return storage


@pytest.fixture(scope="module")
def finetune_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    _tables(root)
    mix = MixSettings(shares={"general_qa": 1, "conversation": 1, "text_only": 1}, seed=5,
                      repeat_time={"vqa": 0.5, "chat": 3, "text": 2.5})
    mix_and_write(str(root), root / "shards", mix, ShardSettings(max_samples=10))
    return root / "shards"


def test_repeat_times_reach_the_manifest_and_every_shape_verifies(finetune_shards):
    manifest = json.loads((finetune_shards / "manifest.json").read_text())
    samples = {name: manifest["sources"][name]["samples"] for name in ("vqa", "chat", "multi", "text")}
    assert samples == {"vqa": 6, "chat": 12, "multi": 4, "text": 12} and manifest["total_samples"] == 34
    assert manifest["sources"]["chat"]["repeat_time"] == 3 and manifest["sources"]["vqa"]["repeat_time"] == 0.5
    result = verify(finetune_shards)
    assert result.ok, result.problems
    assert result.shapes == {"single_image": 18, "multi_image": 4, "text_only": 12, "multi_turn": 12}


def test_export_writes_each_datasets_repeat_time(finetune_shards, tmp_path):
    from shards.export import export_internvl

    meta = json.loads(Path(export_internvl(finetune_shards, tmp_path / "export")).read_text())
    assert meta["chat"]["repeat_time"] == 3 and meta["chat"]["length"] == 4  # each sample once, repeated 3x
    assert meta["text"]["repeat_time"] == 1 and meta["text"]["length"] == 12  # 2.4 is no whole count: as mixed
    assert meta["vqa"]["length"] == 6
    lines = [json.loads(line) for line in (tmp_path / "export" / "annotations" / "multi.jsonl").read_text().splitlines()]
    assert all(isinstance(line["image"], list) and len(line["image"]) == 2 for line in lines)
    text = (tmp_path / "export" / "annotations" / "text.jsonl").read_text().splitlines()
    assert all("image" not in json.loads(line) for line in text)


def test_every_shape_reaches_a_training_step(finetune_shards, tmp_path):
    pytest.importorskip("torch")
    from trainer.data import DataConfig, ShardStream
    from trainer.distributed import setup
    from trainer.model import build_model, visual_tokens_per_tile
    from trainer.optim import OptimConfig, build_optimizer
    from trainer.step import train_step
    from trainer.tokenization import ChatTokenizer, load_tokenizer, train_tokenizer

    tokenizer = load_tokenizer(train_tokenizer([CODE, "What is it? Describe. Same? Noise"] * 5, tmp_path / "tok",
                                               vocab_size=300))
    model = build_model("tiny", len(tokenizer), tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    chat = ChatTokenizer(tokenizer, visual_tokens_per_tile(model.config), context_length=2048)
    config = DataConfig(shards=str(finetune_shards), max_tiles=1, tokens_per_batch=1 << 16, shuffle_buffer=34,
                        max_samples_per_batch=34)
    batch = next(iter(ShardStream(config, chat)))
    assert batch.n_samples == 34 and not batch.dropped
    assert {key.split("-")[0] for key in batch.keys} == {"vqa", "chat", "multi", "text"}
    assert batch.n_tiles == 18 * 1 + 4 * 2  # one tile an image at max_tiles=1; text-only samples have none
    metrics = train_step(model, build_optimizer(model, OptimConfig(lr=1e-3)), [batch], setup(), False, 1.0)
    assert math.isfinite(float(metrics["loss"])) and metrics["samples"] == 34


def test_the_report_shows_each_sources_asked_and_achieved_repeat_time(finetune_shards):
    from shards.report import summary

    manifest = json.loads((finetune_shards / "manifest.json").read_text())
    lines = summary(manifest).splitlines()
    header = next(line for line in lines if line.startswith("| source |"))
    assert "| target_repeat_time | repeat_time |" in header
    row = next(line for line in lines if line.startswith("| text |"))
    assert "| 2.50 | 2.40 |" in row  # asked 2.5 x 5 samples = 12.5, rounded down to 12: 2.4
