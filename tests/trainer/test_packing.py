"""Sequence packing: the same loss and gradients as padded rows; caps kept; images never split."""

import pytest
import torch

from trainer.data import DataConfig, ShardStream
from trainer.model import build_config, build_model, visual_tokens_per_tile
from trainer.packing import Batch, collate_packed, model_inputs, pack
from trainer.tiling import normalise_tiles
from trainer.tokenization import IGNORE_INDEX, ChatTokenizer, TokenizedSample, load_tokenizer


def test_pack_keeps_the_caps_and_places_every_sample_once():
    lengths = [900, 120, 120, 3000, 450, 450, 64, 64, 1700, 300] * 5
    tiles = [3, 1, 1, 13, 2, 2, 1, 1, 7, 1] * 5
    packs = pack(lengths, tiles, budget=4096, max_tiles=20, max_samples=8, seed="s")
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    for members in packs:
        assert sum(lengths[i] for i in members) <= 4096
        assert sum(tiles[i] for i in members) <= 20 and len(members) <= 8
    # Best-fit decreasing: at most one pack more than the caps force (9 here, for the tokens).
    least = max(-(-sum(lengths) // 4096), -(-sum(tiles) // 20), -(-len(lengths) // 8))
    assert least == 9 and len(packs) <= least + 1
    # A sample over the budget is not cut: it gets a pack of its own.
    assert sorted(pack([5000, 10], [1, 1], budget=4096, max_tiles=20, max_samples=8, seed="s")) == [[0], [1]]


@pytest.fixture(scope="module")
def setup(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    per_tile = visual_tokens_per_tile(build_config("tiny", len(tokenizer), image_token_id))
    return tokenizer, image_token_id, ChatTokenizer(tokenizer, per_tile, context_length=1024)


def _rows(batch: Batch) -> list[TokenizedSample]:
    samples = []
    for ids, labels, mask in zip(batch.input_ids, batch.labels, batch.attention_mask, strict=True):
        n = int(mask.sum())
        tiles = 0  # not needed by the collation
        samples.append(TokenizedSample(ids[:n].tolist(), labels[:n].tolist(), tiles))
    return samples


def _loss_and_grads(model, batch: Batch, target_tokens: int):
    model.zero_grad(set_to_none=True)
    attn = model.config._attn_implementation
    out = model(
        **model_inputs(batch, torch.device("cpu"), attn),
        pixel_values=normalise_tiles(batch.pixel_values),
        num_items_in_batch=target_tokens,
    )
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["sdpa_packed", "sdpa", "eager"])
def test_a_pack_gives_the_loss_and_gradients_of_its_samples_padded(shard_dir, setup, attn):
    tokenizer, image_token_id, chat = setup
    config = DataConfig(
        shards=str(shard_dir), max_tiles=4, tokens_per_batch=4096, shuffle_buffer=8, packing=False
    )
    padded = next(iter(ShardStream(config, chat)))
    assert padded.n_samples >= 3 and len(set(padded.attention_mask.sum(1).tolist())) > 1  # uneven rows
    packed = Batch(
        **collate_packed(_rows(padded), chat.pad_id, pad_to_multiple=64),
        pixel_values=padded.pixel_values,
        n_samples=padded.n_samples,
        n_tiles=padded.n_tiles,
        keys=padded.keys,
    )
    assert packed.input_ids.shape[0] == 1 and packed.n_target_tokens == padded.n_target_tokens
    assert packed.n_slots < padded.n_slots and packed.input_ids.shape[1] % 64 == 0
    torch.manual_seed(0)
    model = build_model("tiny", len(tokenizer), image_token_id)
    model.config._attn_implementation = attn
    model.train()
    loss_padded, grads_padded = _loss_and_grads(model, padded, padded.n_target_tokens)
    loss_packed, grads_packed = _loss_and_grads(model, packed, padded.n_target_tokens)
    assert float(loss_packed) == pytest.approx(float(loss_padded), rel=1e-5)
    assert grads_packed.keys() == grads_padded.keys() and len(grads_padded) > 20
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # Without the position ids the samples would see each other: the comparison can fail.
    leaky = Batch(**{**packed.__dict__, "position_ids": None})
    leaky.attention_mask = torch.ones_like(leaky.attention_mask)
    loss_leaky, _ = _loss_and_grads(model, leaky, padded.n_target_tokens)
    assert float(loss_leaky) != pytest.approx(float(loss_padded), rel=1e-5)


def test_stream_packs_hold_whole_samples_under_the_caps(shard_dir, setup):
    _, _, chat = setup
    config = DataConfig(
        shards=str(shard_dir), max_tiles=4, tokens_per_batch=1024, max_tiles_per_batch=9, shuffle_buffer=12
    )
    stream = iter(ShardStream(config, chat))
    for _ in range(6):
        batch = next(stream)
        assert batch.packed and batch.input_ids.shape[0] == 1
        assert batch.n_tokens <= 1024 or batch.n_samples == 1
        assert batch.n_tiles <= 9 or batch.n_samples == 1
        positions = batch.position_ids[0].tolist()
        starts = [i for i, p in enumerate(positions) if p == 0]
        assert len(starts) == len(batch.seq_lengths) and len(batch.seq_lengths) in (
            batch.n_samples,
            batch.n_samples + 1,
        )
        ids = batch.input_ids[0].tolist()
        for start, length in zip(starts, batch.seq_lengths, strict=True):
            segment = ids[start : start + length]
            # every image span sits whole inside one sample
            assert segment.count(chat.img_start) == segment.count(chat.img_end)
            assert batch.labels[0, start] == IGNORE_INDEX
        image_tokens = ids.count(chat.img_context)
        assert (
            image_tokens == batch.n_tiles * chat.tokens_per_tile
            and batch.pixel_values.shape[0] == batch.n_tiles
        )
