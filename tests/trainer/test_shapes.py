"""Every sample shape of the fine-tuning data to a training step: multi-turn, several images, text only."""

import math

import pytest
import torch
from trainer_shapes import SOLID, write_shape_shard

from trainer.data import DataConfig, DataState, ShardStream
from trainer.distributed import setup as runtime_setup
from trainer.model import build_config, build_model, visual_tokens_per_tile
from trainer.optim import OptimConfig, build_optimizer
from trainer.packing import model_inputs
from trainer.step import train_step
from trainer.tiling import normalise_tiles
from trainer.tokenization import IGNORE_INDEX, ChatTokenizer, load_tokenizer


@pytest.fixture(scope="module")
def env(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    per_tile = visual_tokens_per_tile(build_config("tiny", len(tokenizer), image_token_id))
    return tokenizer, image_token_id, ChatTokenizer(tokenizer, per_tile, context_length=4096)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shape_shard(tmp_path_factory.mktemp("shapes"))


def _runs(ids, labels):
    """The labelled stretches of a sequence, as lists of ids."""
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def test_the_loss_mask_covers_every_assistant_turn_and_nothing_else(env):
    tokenizer, _, _ = env
    chat = ChatTokenizer(tokenizer, tokens_per_tile=4, context_length=4096, system_message="Be brief.")
    answers = ["A green square.", "No, it has corners.", "Four."]
    conversation = [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": answers[0]},
                    {"from": "human", "value": "Is it round?"}, {"from": "gpt", "value": answers[1]},
                    {"from": "human", "value": "How many corners?"}, {"from": "gpt", "value": answers[2]}]
    sample = chat(conversation, 3)
    decoded = [tokenizer.decode(run, skip_special_tokens=False) for run in _runs(sample.input_ids, sample.labels)]
    assert decoded == [answer + "<|im_end|>" for answer in answers]
    text = tokenizer.decode(sample.input_ids, skip_special_tokens=False)
    assert text.count("Be brief.") == 1 and text.count("<|im_start|>assistant\n") == 3  # in the input, unlabelled


def test_several_images_share_the_tile_budget_each_at_its_placeholder(shapes, env):
    tokenizer, _, chat = env
    config = DataConfig(shards=str(shapes), max_tiles=12, tokens_per_batch=8192, shuffle_buffer=4,
                        max_samples_per_batch=1)
    batch = next(b for b in ShardStream(config, chat) if b.keys == ["multiimage"])
    assert batch.n_tiles == batch.pixel_values.shape[0] == 5 + 5 + 3
    # Each span has its image's tiles, in <image> order, and the tiles are that image's pixels.
    ids = batch.input_ids[0].tolist()
    starts = [i for i, t in enumerate(ids) if t == tokenizer.convert_tokens_to_ids("<img>")]
    ends = [i for i, t in enumerate(ids) if t == tokenizer.convert_tokens_to_ids("</img>")]
    assert [(e - s - 1) // chat.tokens_per_tile for s, e in zip(starts, ends, strict=True)] == [5, 5, 3]
    colours = [tuple(t.float().mean((1, 2)).round().int().tolist()) for t in batch.pixel_values]
    assert colours == [SOLID["red"]] * 5 + [SOLID["green"]] * 5 + [SOLID["blue"]] * 3
    # The same square alone gets the whole budget: 3x3 + thumbnail.
    stream = ShardStream(config, chat)
    alone = {"__key__": "a", "png": _member(shapes, "multiimage", "png"),
             "json": b'{"conversations": [{"from": "human", "value": "<image>\\nColour?"}, {"from": "gpt", "value": "Red."}]}'}
    assert stream._tokenize(alone).n_tiles == 10


def _member(shapes, key, member):
    import webdataset

    for sample in webdataset.tarfile_samples([{"url": str(shapes / "00000.tar")}]):
        if sample["__key__"] == key:
            return sample[member]
    raise KeyError(key)


@pytest.mark.parametrize("packing", [True, False])
def test_each_shape_to_a_training_step_in_one_micro_batch(shapes, env, packing):
    tokenizer, image_token_id, chat = env
    config = DataConfig(shards=str(shapes), max_tiles=12, tokens_per_batch=32768, shuffle_buffer=4,
                        packing=packing)
    batch = next(iter(ShardStream(config, chat)))
    assert sorted(batch.keys) == ["multiimage", "multiturn", "textonly", "vqa"]
    assert batch.n_tiles == 1 + 1 + 13  # the text-only sample has none
    # Loss on all three answers of the multi-turn sample and the code block of the text-only one.
    assert batch.n_target_tokens > len(tokenizer.encode("```python"))
    torch.manual_seed(0)
    model = build_model("tiny", len(tokenizer), image_token_id)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    metrics = train_step(model, optimizer, [batch], runtime_setup(), bf16=False, grad_clip=1.0)
    assert math.isfinite(float(metrics["loss"])) and metrics["samples"] == 4 and metrics["tiles"] == 15
    moved = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("model.vision_tower") for n in moved) and any("language_model" in n for n in moved)


def _loss_and_grads(model, batch, target_tokens):
    model.zero_grad(set_to_none=True)
    pixels = None if batch.pixel_values is None else normalise_tiles(batch.pixel_values)
    out = model(**model_inputs(batch, torch.device("cpu"), model.config._attn_implementation),
                pixel_values=pixels, num_items_in_batch=target_tokens)
    out.loss.backward()
    return float(out.loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_text_only_micro_batch_on_several_ranks_runs_internvit_and_learns_the_same(shapes, env, tmp_path):
    tokenizer, image_token_id, chat = env
    text = write_shape_shard(tmp_path / "text", keys=("textonly",))
    config = DataConfig(shards=str(text), max_tiles=12, shuffle_buffer=1, streams=2)
    alone = next(iter(ShardStream(config, chat, state=DataState(2))))  # one rank: stream 0 first
    ranked = next(iter(ShardStream(config, chat, rank=0, world_size=2, state=DataState(2))))
    assert alone.keys == ranked.keys == ["textonly"]
    assert alone.pixel_values is None and ranked.pixel_values.shape[0] == 1  # a blank tile for InternViT
    assert ranked.n_tiles == 0 and ranked.n_samples == 1 and ranked.n_tokens == alone.n_tokens
    assert ranked.n_target_tokens == alone.n_target_tokens
    torch.manual_seed(0)
    model = build_model("tiny", len(tokenizer), image_token_id)
    loss_alone, grads_alone = _loss_and_grads(model, alone, alone.n_target_tokens)
    loss_ranked, grads_ranked = _loss_and_grads(model, ranked, alone.n_target_tokens)
    assert loss_ranked == pytest.approx(loss_alone, rel=1e-6)
    vision = [n for n in grads_ranked if n.startswith("model.vision_tower")]
    assert vision and all(not grads_ranked[n].any() for n in vision)  # ran, and changed nothing
    for name, grad in grads_alone.items():
        torch.testing.assert_close(grads_ranked[name], grad, rtol=1e-5, atol=1e-7, msg=name)

