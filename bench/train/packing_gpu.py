"""Tokens/s and MFU of ``mini-internvl-2b`` on one GPU: packed against padded micro-batches, one run.

The step is :func:`trainer.step.train_step` (bf16 autocast, fused AdamW, clipping) over the same
``--samples`` samples each time, laid out in two ways under the same token budget: padded rows (the
trainer before packing) and packs (``trainer.packing``). The samples follow the demo mixture
(``bench_packing.TASKS``: captions and detection on scenes whose tile count follows the aspect ratio,
short OCR crops, 12-tile + thumbnail document pages with long transcriptions), 256 tokens per tile,
context 4096. Model FLOPs are counted per sample (``mfu_gpu.model_flops``: each sample's own causal
attention, no padding), so both layouts have the same work and MFU compares their speed.

Variants (``--variants``): ``padded:sdpa`` (the baseline), ``packed:sdpa_packed`` (one sdpa call
per sample), ``packed:flash_attention_2`` (varlen flash, when ``flash-attn`` is installed),
``packed:sdpa`` (the block mask over the whole pack).

    python bench/train/packing_gpu.py [--samples 48 --budget 16384 --steps 3 --compile]
    python bench/train/packing_gpu.py --device cpu --preset tiny --samples 6 --steps 1   # dry run
"""

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_packing import TASKS  # noqa: E402
from mfu_gpu import PEAK_BF16, VOCAB, model_flops  # noqa: E402

from trainer.distributed import Runtime  # noqa: E402
from trainer.model import ModelConfig, build_model, parameter_count  # noqa: E402
from trainer.optim import OptimConfig, build_optimizer  # noqa: E402
from trainer.packing import Batch, collate_packed, collate_padded, group_padded, pack  # noqa: E402
from trainer.step import train_step  # noqa: E402
from trainer.tiling import tile_count  # noqa: E402
from trainer.tokenization import TokenizedSample  # noqa: E402

IMG_START, IMG_END, IMG_CONTEXT = 92544, 92545, 92546


def make_samples(n: int, per_tile: int, context: int, seed: int = 0) -> list[TokenizedSample]:
    """Token sequences shaped like the demo mixture: system + question, image span, answer."""
    rng = random.Random(seed)
    names, shares = list(TASKS), [t[0] for t in TASKS.values()]
    samples = []
    for _ in range(n):
        _, size, words = TASKS[rng.choices(names, shares)[0]]
        tiles = tile_count(*size(rng), 1, 12)
        prompt = [rng.randrange(92000) for _ in range(40)]
        answer = [rng.randrange(92000) for _ in range(int(words(rng) * 1.3) + 2)]
        ids = (
            prompt[:20] + [IMG_START] + [IMG_CONTEXT] * (per_tile * tiles) + [IMG_END] + prompt[20:] + answer
        )
        labels = [-100] * (len(ids) - len(answer)) + answer
        if len(ids) > context:
            continue
        samples.append(TokenizedSample(ids, labels, tiles))
    return samples


def layouts(samples, budget: int, max_tiles: int, generator) -> dict[str, list[Batch]]:
    lengths, tiles = [len(s.input_ids) for s in samples], [s.n_tiles for s in samples]
    groups = {
        "padded": group_padded(lengths, tiles, budget, max_tiles, 64),
        "packed": pack(lengths, tiles, budget, max_tiles, 64, seed="gpu"),
    }
    result = {}
    for name, parts in groups.items():
        batches = []
        for group in parts:
            members = [samples[i] for i in group]
            tensors = collate_packed(members, 0, 64) if name == "packed" else collate_padded(members, 0)
            n_tiles = sum(s.n_tiles for s in members)
            pixels = torch.randint(0, 256, (n_tiles, 3, 448, 448), dtype=torch.uint8, generator=generator)
            batches.append(
                Batch(**tensors, pixel_values=pixels, n_samples=len(members), n_tiles=n_tiles, keys=[])
            )
        result[name] = batches
    return result


def sample_flops(config, samples) -> float:
    """Model FLOPs of the samples, each counted alone (no padding, attention within the sample)."""
    total = 0.0
    for s in samples:
        ones = torch.ones((1, len(s.input_ids)), dtype=torch.long)
        total += model_flops(config, Batch(ones, ones, ones, None, 1, s.n_tiles, []))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini-internvl-2b")
    parser.add_argument("--samples", type=int, default=48, help="samples per optimizer step")
    parser.add_argument("--budget", type=int, default=16384, help="tokens per micro-batch")
    parser.add_argument("--max-tiles-per-batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    parser.add_argument("--compile", action="store_true", help="torch.compile each layer")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    parser.add_argument(
        "--variants", default="padded:sdpa,packed:sdpa_packed,packed:flash_attention_2,packed:sdpa"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    torch.manual_seed(0)
    settings = ModelConfig(
        preset=args.preset,
        compile=args.compile,
        gradient_checkpointing=args.checkpointing,
        attn_implementation="sdpa",
    )
    model = build_model(args.preset, VOCAB, IMG_CONTEXT, settings, device=device).train()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-5))
    samples = make_samples(args.samples, model.config.image_seq_length, 4096)
    micro = layouts(samples, args.budget, args.max_tiles_per_batch, torch.Generator().manual_seed(0))
    flops = sample_flops(model.config, samples)
    tokens = sum(len(s.input_ids) for s in samples)
    runtime = Runtime(0, 1, device)
    result = {
        "gpu": name,
        "preset": args.preset,
        "params": parameter_count(model),
        "samples_per_step": len(samples),
        "tokens_per_step": tokens,
        "tiles_per_step": sum(s.n_tiles for s in samples),
        "model_flops_per_step": flops,
        "budget": args.budget,
        "compile": args.compile,
        "checkpointing": args.checkpointing,
        "torch": torch.__version__,
    }
    for variant in args.variants.split(","):
        layout, attn = variant.split(":")
        if attn.startswith("flash") and importlib.util.find_spec("flash_attn") is None:
            result[variant] = "flash-attn not installed"
            continue
        model.config._attn_implementation = attn
        batches = micro[layout]
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            started = time.perf_counter()
            train_step(model, optimizer, batches, runtime, bf16=cuda, grad_clip=1.0)
            _sync(cuda)
            first = time.perf_counter() - started
            start = time.perf_counter()
            for _ in range(args.steps):
                train_step(model, optimizer, batches, runtime, bf16=cuda, grad_clip=1.0)
            _sync(cuda)
            seconds = (time.perf_counter() - start) / args.steps
        except torch.OutOfMemoryError:
            result[variant] = "out of memory"
            continue
        slots = sum(b.n_slots for b in batches)
        result[variant] = {
            "micro_batches": len(batches),
            "padding_share": round(1 - tokens / slots, 4),
            "first_step_s": round(first, 1),
            "step_s": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds),
            "achieved_tflops": round(flops / seconds / 1e12, 1),
            "mfu": round(flops / seconds / peak, 4) if peak else None,
            "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        }
        print(variant, json.dumps(result[variant]), flush=True)
    base = result.get("padded:sdpa")
    if isinstance(base, dict):
        for entry in list(result.values()):
            if isinstance(entry, dict) and "tokens_per_s" in entry:
                entry["speedup"] = round(entry["tokens_per_s"] / base["tokens_per_s"], 2)
    print(json.dumps(result, indent=2))


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
