"""Batches from WebDataset shards: token budget, split by stream, rank and worker, restored positions, drop counts."""

import io
import json

import pytest
import webdataset
from PIL import Image
from trainer_testdata import write_shards

from trainer.data import DataConfig, DataState, ShardStream, make_loader
from trainer.model import build_config, visual_tokens_per_tile
from trainer.tokenization import ChatTokenizer, load_tokenizer


@pytest.fixture(scope="module")
def chat(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    per_tile = visual_tokens_per_tile(build_config("tiny", len(tokenizer), 0))
    return ChatTokenizer(tokenizer, per_tile, context_length=1024)


@pytest.fixture(scope="module")
def four_shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("four"), n_samples=24, per_shard=6)


def take(stream_or_loader, n):
    it = iter(stream_or_loader)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("packing", [False, True])
def test_batches_respect_the_token_budget(shard_dir, chat, packing):
    config = DataConfig(
        shards=str(shard_dir), max_tiles=4, tokens_per_batch=1500, shuffle_buffer=8, packing=packing
    )
    for batch in take(ShardStream(config, chat), 10):
        rows, length = batch.input_ids.shape
        assert batch.n_samples == len(batch.keys)
        if packing:
            assert rows == 1 and (batch.n_tokens <= 1500 or batch.n_samples == 1)
        else:
            assert rows == batch.n_samples and (rows * length <= 1500 or rows == 1)
        assert batch.pixel_values.dtype.is_floating_point is False
        assert batch.pixel_values.shape[0] == batch.n_tiles
        image_tokens = int((batch.input_ids == chat.img_context).sum())
        assert image_tokens == batch.n_tiles * chat.tokens_per_tile  # every tile has its tokens


def _epoch_keys(config, chat, rank, world, per_epoch):
    keys = []
    for batch in ShardStream(config, chat, rank=rank, world_size=world, state=DataState(world)):
        keys += batch.keys
        if len(keys) >= per_epoch:
            return keys[:per_epoch]


@pytest.mark.parametrize("world", [2, 8])  # 8 readers > 4 shards: split sample by sample
def test_ranks_split_each_epoch_without_overlap(four_shards, chat, world):
    config = DataConfig(shards=str(four_shards), max_tiles=1, tokens_per_batch=400, shuffle_buffer=1)
    per_epoch = 24 // world
    parts = [set(_epoch_keys(config, chat, rank, world, per_epoch)) for rank in range(world)]
    assert sum(len(p) for p in parts) == 24
    assert set().union(*parts) == {f"{i:06d}" for i in range(24)}


def test_epochs_are_reshuffled_and_streams_are_reproducible(four_shards, chat):
    config = DataConfig(shards=str(four_shards), max_tiles=1, tokens_per_batch=400, shuffle_buffer=6)
    keys = [k for b in take(ShardStream(config, chat), 30) for k in b.keys]
    again = [k for b in take(ShardStream(config, chat), 30) for k in b.keys]
    assert keys == again
    assert sorted(keys[:24]) != keys[:24] and keys[24:48] != keys[:24]


@pytest.mark.parametrize("packing", [False, True])
def test_restored_positions_continue_exactly_with_workers(four_shards, chat, packing):
    """Two streams on two workers; a state taken after whole rounds (as a step ends) resumes there."""
    config = DataConfig(
        shards=str(four_shards), max_tiles=1, tokens_per_batch=400, shuffle_buffer=5, num_workers=2,
        packing=packing,
    )
    full = take(make_loader(ShardStream(config, chat)), 12)
    assert [b.stream for b in full] == [0, 1] * 6
    for consumed in (2, 6, 8):  # mid-window and at window ends
        state = DataState(2)
        for batch in full[:consumed]:
            state.advance(batch)
        resumed = make_loader(ShardStream(config, chat, state=state))
        assert [b.keys for b in take(resumed, 12 - consumed)] == [b.keys for b in full[consumed:]]
    assert len({k for b in full for k in b.keys}) > 4  # the two streams read different samples


def test_one_rank_takes_the_rounds_two_ranks_share(four_shards, chat):
    """The data of a step does not depend on the world size: one rank runs both streams."""
    config = DataConfig(shards=str(four_shards), max_tiles=1, tokens_per_batch=400, shuffle_buffer=5)
    alone = take(ShardStream(config, chat, state=DataState(2)), 8)
    ranks = [take(ShardStream(config, chat, rank=r, world_size=2, state=DataState(2)), 4) for r in (0, 1)]
    assert [b.keys for b in alone] == [b.keys for pair in zip(*ranks, strict=True) for b in pair]
    with pytest.raises(ValueError, match="data.streams=2 must be a multiple"):
        ShardStream(config, chat, rank=0, world_size=4, state=DataState(2))


def test_bad_samples_are_counted_by_reason(tmp_path, chat):
    good = Image.new("RGB", (300, 200), "red")
    buffer = io.BytesIO()
    good.save(buffer, format="PNG")
    conversation = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "Red."}]
    record = json.dumps({"id": "x", "conversations": conversation})
    with webdataset.TarWriter(str(tmp_path / "00000.tar")) as sink:
        sink.write({"__key__": "good", "png": buffer.getvalue(), "json": record})
        sink.write({"__key__": "broken", "jpg": b"not an image", "json": record})
        sink.write({"__key__": "truncated", "png": buffer.getvalue()[:200], "json": record})
        sink.write({"__key__": "badjson", "png": buffer.getvalue(), "json": "{oops"})
        sink.write({"__key__": "noimage", "json": record})  # an <image> with no image member
        two = json.dumps({"conversations": [{"from": "human", "value": "<image><image>"}, conversation[1]]})
        sink.write({"__key__": "twoimages", "png": buffer.getvalue(), "json": two})
    config = DataConfig(shards=str(tmp_path), max_tiles=1, max_samples_per_batch=1, shuffle_buffer=1)
    stream = iter(ShardStream(config, chat))
    dropped: dict[str, int] = {}
    seen = []
    for _ in range(3):  # three epochs, one good sample each
        batch = next(stream)
        seen += batch.keys
        for reason, count in batch.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
    assert seen == ["good"] * 3
    # Windows of one sample keep the file order; drops travel with the next batch out, so the
    # three good batches carry the five drops after "good" of two whole epochs (the truncated
    # image's failure is found when its own batch is decoded).
    assert dropped == {"bad_image": 4, "bad_json": 2, "image_placeholder_mismatch": 4}


def test_no_shards_is_a_clear_error(tmp_path, chat):
    with pytest.raises(FileNotFoundError, match="no .tar shards"):
        ShardStream(DataConfig(shards=str(tmp_path)), chat)
