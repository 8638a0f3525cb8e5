"""Fixtures of the trainer tests: shards and a tokenizer made here; nothing downloaded."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helper modules beside the tests

pytest.importorskip("webdataset")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from trainer_testdata import COLOURS, SHAPES, write_shards  # noqa: E402

# Two cores shared with other test suites: more than one intra-op thread only adds contention.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from trainer.tokenization import train_tokenizer

    texts = [f"A {c} {s} on a white background. Describe the image briefly." for c in COLOURS for s in SHAPES]
    texts += ["你好，世界。这是一张图片。", "system user assistant"]
    return train_tokenizer(texts * 20, tmp_path_factory.mktemp("tok") / "tokenizer", vocab_size=600)
