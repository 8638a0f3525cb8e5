"""Tokens/s of the tiny model on CPU: the whole trainer against a bare transformers loop.

Both run the same model (``tiny`` preset), the same optimizer and the same batches' shapes.
"ours" is :func:`trainer.train.train` end to end: reading WebDataset shards, tokenising,
token-budget batching, tiling, the step, logging. "bare" is a loop over batches collated in
advance calling ``model(...)``, ``backward`` and ``AdamW.step`` only. The ratio shows what the
data path and bookkeeping cost.

    .venv/bin/python bench/train/bench_train_cpu.py [--steps 20] [--threads 1]
"""

import argparse
import io
import json
import random
import tempfile
import time
from pathlib import Path

import torch
import webdataset
from PIL import Image

from trainer.data import ShardStream
from trainer.model import build_model, visual_tokens_per_tile
from trainer.optim import build_optimizer
from trainer.packing import model_inputs
from trainer.recipes import stage2
from trainer.tiling import normalise_tiles
from trainer.tokenization import ChatTokenizer, load_tokenizer, train_tokenizer
from trainer.train import train

COLOURS = ["red", "green", "blue", "yellow", "black", "white"]


def make_shards(root: Path, n: int = 256) -> None:
    rng = random.Random(0)
    with webdataset.ShardWriter(str(root / "%05d.tar"), maxcount=64) as sink:
        for i in range(n):
            colour = rng.choice(COLOURS)
            size = rng.choice([(320, 240), (640, 360), (500, 900), (448, 448)])
            buffer = io.BytesIO()
            Image.new("RGB", size, colour).save(buffer, format="JPEG")
            conversation = [
                {"from": "human", "value": "<image>\nWhat colour fills the image?"},
                {"from": "gpt", "value": f"The whole image is {colour}." * rng.randint(1, 4)},
            ]
            record = {"id": str(i), "width": size[0], "height": size[1], "conversations": conversation}
            sink.write({"__key__": f"{i:06d}", "jpg": buffer.getvalue(), "json": json.dumps(record)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the trainer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "shards").mkdir()
        make_shards(tmp / "shards")
        texts = [f"What colour fills the image? The whole image is {c}." for c in COLOURS] * 20
        tokenizer_dir = train_tokenizer(texts, tmp / "tok", vocab_size=400)
        config = stage2(
            str(tmp / "shards"),
            str(tokenizer_dir),
            preset="tiny",
            steps=args.steps,
            out_dir=str(tmp / "out"),
            global_batch_samples=16,
            checkpoint_every=0,
            progress=False,
            data={
                "max_tiles": 4,
                "tokens_per_batch": 4096,
                "shuffle_buffer": 64,
                "num_workers": args.workers,
            },
            tokenize={"context_length": 1024, "system_message": ""},
            optim={"lr": 1e-3, "warmup_steps": 1},
        )
        start = time.perf_counter()
        history = train(config)
        total_s = time.perf_counter() - start
        ours_s = sum(m["seconds"] for m in history)  # steps only: data wait + compute, no setup
        ours_tokens = sum(m["tokens"] for m in history)

        # The bare loop: the same batches, collated before the clock starts.
        tokenizer = load_tokenizer(tokenizer_dir)
        image_token = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
        torch.manual_seed(0)
        model = build_model("tiny", len(tokenizer), image_token, config.model)
        chat = ChatTokenizer(tokenizer, visual_tokens_per_tile(model.config), 1024, "")
        stream = iter(ShardStream(config.data.model_copy(update={"num_workers": 0}), chat))
        batches = [next(stream) for _ in range(sum(m["micro_batches"] for m in history))]
        pixels = [normalise_tiles(b.pixel_values) for b in batches]
        optimizer = build_optimizer(model, config.optim)
        model.train()
        start = time.perf_counter()
        for batch, pixel_values in zip(batches, pixels, strict=True):
            out = model(  # packed or padded, the inputs the trainer gives the model
                **model_inputs(batch, torch.device("cpu"), model.config._attn_implementation),
                pixel_values=pixel_values,
            )
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        bare_s = time.perf_counter() - start
        bare_tokens = sum(b.n_tokens for b in batches)
    print(
        f"steps={args.steps} micro-batches={len(batches)} threads={args.threads} loader workers={args.workers}"
    )
    print(f"bare transformers loop: {bare_tokens / bare_s:9.0f} tokens/s")
    print(f"vlmix trainer:          {ours_tokens / ours_s:9.0f} tokens/s  (steps, including waits for data)")
    print(f"vlmix trainer, whole run with setup and final checkpoint: {ours_tokens / total_s:.0f} tokens/s")
    print(f"ratio (ours / bare):    {(ours_tokens / ours_s) / (bare_tokens / bare_s):9.2f}")


if __name__ == "__main__":
    main()
