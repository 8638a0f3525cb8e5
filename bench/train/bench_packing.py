"""Sequence packing against padded micro-batches, on CPU, in one run.

1. Padding share of the micro-batches at the real models' scale (256 tokens per tile, up to 12
   tiles + thumbnail, context 4096, a 16k-token budget), padded and packed, over the same stream.
2. Tokens/s of the ``tiny`` model trained by :func:`trainer.train.train`, packed and padded, on the
   same shards with the same global batch and token budget (real tokens only; padding not counted).
3. The same, model only, on identical samples: forward and backward of the ``tiny`` model over the
   same samples in padded micro-batches and in packs (``sdpa_packed`` and ``sdpa`` with the block
   mask), so the data order and the loader are out of the comparison.

The shards are ``--shards`` (e.g. the demo's ``mix/shards``) or, without it, generated here with
the demo's mixture and sizes: captions and detection on 256-640 x 200-480 scenes (the tile count
follows the aspect ratio: 1 to 13), short OCR crops, and document pages of 12 tiles + thumbnail
with long transcriptions.

    .venv/bin/python bench/train/bench_packing.py [--shards DIR] [--steps 6] [--threads 1]
"""

import argparse
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

import torch
import webdataset
from PIL import Image

from trainer.data import DataConfig, ShardStream, list_shards
from trainer.model import build_model
from trainer.packing import Batch, collate_packed, collate_padded, group_padded, model_inputs, pack
from trainer.recipes import stage2
from trainer.tiling import normalise_tiles, tile_count
from trainer.tokenization import ChatTokenizer, load_tokenizer, train_tokenizer
from trainer.train import train

WORDS = (
    "the a red blue green small large square circle page text line table figure shows of on in with".split()
)
#: task: (share, image size, answer words) — the demo mixture's shares
TASKS = {
    "captioning": (0.539, lambda r: (r.randint(256, 640), r.randint(200, 480)), lambda r: r.randint(8, 25)),
    "detection": (0.052, lambda r: (r.randint(256, 640), r.randint(200, 480)), lambda r: r.randint(30, 90)),
    "ocr_large": (
        0.320,
        lambda r: (r.choice([1240, 1654]), r.choice([1754, 2339])),
        lambda r: r.randint(150, 700),
    ),
    "ocr_small": (0.089, lambda r: (r.randint(200, 700), r.randint(60, 160)), lambda r: r.randint(2, 12)),
}


def make_shards(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    names, shares = list(TASKS), [t[0] for t in TASKS.values()]
    root.mkdir(parents=True, exist_ok=True)
    with webdataset.ShardWriter(str(root / "%05d.tar"), maxcount=100) as sink:
        for i in range(n):
            task = rng.choices(names, shares)[0]
            _, size, words = TASKS[task]
            width, height = size(rng)
            buffer = io.BytesIO()
            Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3))).save(
                buffer, "JPEG"
            )
            answer = " ".join(rng.choice(WORDS) for _ in range(words(rng)))
            conversation = [
                {"from": "human", "value": f"<image>\nPlease do the {task.replace('_', ' ')} task."},
                {"from": "gpt", "value": answer},
            ]
            record = {
                "id": str(i),
                "task": task,
                "width": width,
                "height": height,
                "conversations": conversation,
            }
            sink.write({"__key__": f"{i:06d}", "jpg": buffer.getvalue(), "json": json.dumps(record)})


def padding(shards: str, tokenizer, n_batches: int) -> dict:
    """Padding share and budget fill of ``n_batches`` padded micro-batches and of the same samples packed."""
    chat = ChatTokenizer(tokenizer, tokens_per_tile=256, context_length=4096, system_message="")
    result = {}
    samples = None
    for packing in (False, True):
        config = DataConfig(
            shards=shards, max_tiles=12, tokens_per_batch=16384, shuffle_buffer=1000, packing=packing
        )
        stream, batches = iter(ShardStream(config, chat)), []
        while len(batches) < n_batches if samples is None else sum(b.n_samples for b in batches) < samples:
            batches.append(next(stream))
        samples = sum(b.n_samples for b in batches)
        tokens, slots = sum(b.n_tokens for b in batches), sum(b.n_slots for b in batches)
        result["packed" if packing else "padded"] = {
            "micro_batches": len(batches),
            "samples": samples,
            "padding_share": round(1 - tokens / slots, 4),
            "budget_fill": round(tokens / (16384 * len(batches)), 4),
            "samples_per_micro_batch": round(samples / len(batches), 2),
        }
    return result


def model_only(shards: str, tokenizer, n_samples: int, rounds: int) -> dict:
    """Forward + backward of the tiny model over the same samples, padded and packed (4096-token budget)."""
    chat = ChatTokenizer(tokenizer, tokens_per_tile=64, context_length=2048, system_message="")
    samples = []
    for sample in webdataset.tarfile_samples([{"url": url} for url in list_shards(shards)]):
        width, height = Image.open(io.BytesIO(sample["jpg"])).size
        samples.append(chat(json.loads(sample["json"])["conversations"], tile_count(width, height, 1, 12)))
        if len(samples) == n_samples:
            break
    lengths, tiles = [len(s.input_ids) for s in samples], [s.n_tiles for s in samples]
    layouts = {
        "padded": [
            collate_padded([samples[i] for i in g], chat.pad_id)
            for g in group_padded(lengths, tiles, 4096, 64, 64)
        ],
        "packed": [
            collate_packed([samples[i] for i in g], chat.pad_id, 64)
            for g in pack(lengths, tiles, 4096, 64, 64, "b")
        ],
    }
    image_token = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    variants = {}
    for name, attn in (("padded", "sdpa"), ("packed", "sdpa_packed"), ("packed", "sdpa")):
        torch.manual_seed(0)
        model = build_model("tiny", len(tokenizer), image_token).train()
        model.config._attn_implementation = attn
        batches = []
        for tensors in layouts[name]:
            n = int((tensors["input_ids"] == image_token).sum()) // 64
            pixels = normalise_tiles(torch.randint(0, 256, (n, 3, 448, 448), dtype=torch.uint8))
            batches.append((Batch(**tensors, pixel_values=None, n_samples=0, n_tiles=n, keys=[]), pixels))
        variants[f"{name}, {attn}"] = (model, attn, batches, [])
    for _ in range(rounds):  # the variants take turns, so a change in the machine's load hits all of them
        for model, attn, batches, seconds in variants.values():
            start = time.perf_counter()
            for batch, pixels in batches:
                out = model(
                    **model_inputs(batch, torch.device("cpu"), attn),
                    pixel_values=pixels,
                    num_items_in_batch=1000,
                )
                out.loss.backward()
            seconds.append(time.perf_counter() - start)
    tokens = sum(len(s.input_ids) for s in samples)
    result = {}
    for key, (_, _, batches, seconds) in variants.items():
        slots = sum(b.n_slots for b, _ in batches)
        result[key] = {
            "micro_batches": len(batches),
            "padding_share": round(1 - tokens / slots, 4),
            "tokens_per_s": round(tokens / min(seconds)),
        }
    base = result["padded, sdpa"]["tokens_per_s"]
    for entry in result.values():
        entry["ratio"] = round(entry["tokens_per_s"] / base, 2)
    return {"samples": len(samples), "tiles": sum(tiles), **result}


def throughput(shards: str, tokenizer_dir: Path, out: Path, steps: int, workers: int, rounds: int) -> dict:
    """Tokens/s of the tiny model, padded and packed in alternate runs (the machine's load varies);
    the first step of each run (warm-up) left out, the best run of each mode kept."""
    runs: dict[str, list[dict]] = {"padded": [], "packed": []}
    for round_ in range(rounds):
        for packing in (False, True):
            config = stage2(
                shards, str(tokenizer_dir), preset="tiny", steps=steps + 1, global_batch_samples=24,
                out_dir=str(out / f"{packing}-{round_}"), checkpoint_every=0, progress=False,
                model={"drop_path_rate": 0.0, "gradient_checkpointing": False},
                data={"max_tiles": 12, "tokens_per_batch": 4096, "shuffle_buffer": 200, "packing": packing,
                      "num_workers": workers},
                tokenize={"context_length": 2048, "system_message": ""}, optim={"lr": 1e-3, "warmup_steps": 1},
            )  # fmt: skip
            history = train(config)[1:]
            seconds = sum(m["seconds"] for m in history)
            tokens, slots = sum(m["tokens"] for m in history), sum(m["slots"] for m in history)
            runs["packed" if packing else "padded"].append(
                {
                    "tokens_per_s": round(tokens / seconds),
                    "samples_per_s": round(sum(m["samples"] for m in history) / seconds, 2),
                    "micro_batches_per_step": round(
                        sum(m["micro_batches"] for m in history) / len(history), 1
                    ),
                    "padding_share": round(1 - tokens / slots, 4),
                }
            )
    result = {mode: max(entries, key=lambda e: e["tokens_per_s"]) for mode, entries in runs.items()}
    result["all_runs_tokens_per_s"] = {
        mode: [e["tokens_per_s"] for e in entries] for mode, entries in runs.items()
    }
    result["ratio_tokens_per_s"] = round(
        result["packed"]["tokens_per_s"] / result["padded"]["tokens_per_s"], 2
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", help="a shard directory (default: generated, see the docstring)")
    parser.add_argument("--samples", type=int, default=1200, help="samples to generate")
    parser.add_argument("--batches", type=int, default=60, help="padded micro-batches to measure")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternate runs per mode")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the trainer runs")
    parser.add_argument("--model-samples", type=int, default=60, help="samples of the model-only comparison")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = args.shards
        if shards is None:
            make_shards(tmp / "shards", args.samples)
            shards = str(tmp / "shards")
        texts = [" ".join(WORDS)] * 50 + [f"Please do the {t.replace('_', ' ')} task." for t in TASKS] * 50
        tokenizer_dir = train_tokenizer(texts, tmp / "tok", vocab_size=400)
        report = {
            "shards": args.shards or f"generated ({args.samples} samples, the demo's mixture)",
            "padding_16k_budget_256_tokens_per_tile": padding(
                shards, load_tokenizer(tokenizer_dir), args.batches
            ),
            "tiny_model_cpu_trainer": throughput(
                shards, tokenizer_dir, tmp / "runs", args.steps, args.workers, args.rounds
            ),
            "tiny_model_cpu_same_samples": model_only(
                shards, load_tokenizer(tokenizer_dir), args.model_samples, 2 * args.rounds + 1
            ),
            "threads": args.threads,
            "load_average_after": round(os.getloadavg()[0], 2),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
