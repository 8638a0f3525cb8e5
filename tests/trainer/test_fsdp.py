"""Two processes under FSDP2 (gloo) take the same steps as one process holding both micro-batches,
also when one rank's micro-batch has no image at all (a text-only one: its blank tile keeps
InternViT's collectives in step; without it rank 0 aborts on a mismatched collective)."""

import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))


def test_two_process_fsdp_matches_one_process(shard_dir, tokenizer_dir, tmp_path):
    import trainer_fsdp_worker
    from trainer_shapes import write_shape_shard
    from trainer_steps import run_steps

    from trainer.data import DataConfig, DataState, ShardStream
    from trainer.model import build_config, visual_tokens_per_tile
    from trainer.tokenization import ChatTokenizer, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    per_tile = visual_tokens_per_tile(build_config("tiny", len(tokenizer), image_token_id))
    chat = ChatTokenizer(tokenizer, per_tile, context_length=512)
    data = DataConfig(shards=str(shard_dir), max_tiles=2, tokens_per_batch=1200, shuffle_buffer=8)
    batches = iter(ShardStream(data, chat))
    steps = [[next(batches), next(batches)] for _ in range(3)]  # two micro-batches a step
    # The last step's second micro-batch (rank 1's) is text only, as a two-rank stream makes it.
    text = DataConfig(shards=str(write_shape_shard(tmp_path / "text", keys=("textonly",))), streams=2)
    text_alone = next(iter(ShardStream(text, chat, state=DataState(2))))
    text_ranked = next(iter(ShardStream(text, chat, rank=0, world_size=2, state=DataState(2))))
    assert text_alone.pixel_values is None and text_ranked.pixel_values.shape[0] == 1
    payload = tmp_path / "payload.pt"
    torch.save({"steps": steps[:2] + [[steps[2][0], text_ranked]], "vocab_size": len(tokenizer),
                "image_token_id": image_token_id}, payload)

    alone = run_steps(len(tokenizer), image_token_id, steps[:2] + [[steps[2][0], text_alone]])
    result = tmp_path / "losses.pt"
    rendezvous = tmp_path / "rendezvous"
    mp.spawn(trainer_fsdp_worker.run, args=(2, str(rendezvous), str(payload), str(result)), nprocs=2, join=True)
    sharded = torch.load(result)

    assert len(sharded) == len(alone) == 3
    assert sharded == pytest.approx(alone, rel=1e-4, abs=1e-5)
    assert alone[-1] < alone[0]  # the steps did learn something: the comparison is not of constants
