"""Model FLOPs utilisation of one training step on a GPU, bf16, for the ~2B preset.

The model is ``mini-internvl-2b`` (InternViT-300M + InternLM2-1.8B dimensions, 2.2B
parameters) built by ``trainer.model``; the step is ``trainer.train.train_step`` (bf16
autocast, AdamW, clipping) on synthetic batches shaped like the training data: each sample one
image of ``--tiles`` tiles (256 tokens each) and ``--text`` text tokens.

Model FLOPs are counted from the shapes (3x the forward's matrix products, all parameters
trained; causal attention counted as half its square; recomputation under activation
checkpointing is not model work), then steps are timed with and without checkpointing. MFU = model FLOPs per step / step time / peak dense bf16 FLOP/s of the GPU.

    python bench/train/mfu_gpu.py [--samples-per-micro 2 --micro 4 --tiles 7 --text 512 --steps 5]
"""

import argparse
import json
import time

import torch

from trainer.data import Batch
from trainer.distributed import Runtime
from trainer.model import ModelConfig, build_model, enable_activation_checkpointing, parameter_count
from trainer.optim import OptimConfig, build_optimizer
from trainer.train import train_step

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM
VOCAB, IMG_START, IMG_END, IMG_CONTEXT = 92553, 92544, 92545, 92546


def synthetic_batch(samples: int, tiles: int, text: int, per_tile: int, generator) -> Batch:
    span = [IMG_START] + [IMG_CONTEXT] * (per_tile * tiles) + [IMG_END]
    rows, labels = [], []
    for _ in range(samples):
        words = torch.randint(0, 92000, (text,), generator=generator).tolist()
        rows.append(span + words)
        labels.append([-100] * (len(span) + text // 2) + words[text // 2 :])  # answer: second half
    ids = torch.tensor(rows)
    pixels = torch.randint(0, 256, (samples * tiles, 3, 448, 448), dtype=torch.uint8, generator=generator)
    return Batch(ids, torch.tensor(labels), torch.ones_like(ids), pixels, samples, samples * tiles, [], {})


def model_flops(config, batch: Batch) -> float:
    """Training FLOPs (forward + backward = 3x forward) of one micro-batch."""
    v, t = config.vision_config, config.text_config
    patches = (v.image_size[0] // v.patch_size[0]) * (v.image_size[1] // v.patch_size[1])
    n = patches + 1  # with the CLS token
    vit_tile = v.num_hidden_layers * (
        2 * n * (4 * v.hidden_size**2 + 2 * v.hidden_size * v.intermediate_size)
    )
    vit_tile += v.num_hidden_layers * 4 * n * n * v.hidden_size  # QK^T and AV, bidirectional
    vit_tile += 2 * patches * 3 * v.patch_size[0] * v.patch_size[1] * v.hidden_size
    shuffled = v.hidden_size * int(1 / config.downsample_ratio) ** 2
    projector_tile = 2 * config.image_seq_length * (shuffled * t.hidden_size + t.hidden_size**2)
    kv = t.num_key_value_heads * (t.hidden_size // t.num_attention_heads)
    per_token = 2 * (2 * t.hidden_size**2 + 2 * t.hidden_size * kv + 3 * t.hidden_size * t.intermediate_size)
    llm = 0
    for length in batch.attention_mask.sum(dim=1).tolist():
        llm += t.num_hidden_layers * (
            length * per_token + 2 * length * length * t.hidden_size
        )  # causal: half
        llm += 2 * length * t.hidden_size * t.vocab_size  # the LM head
    return 3 * (batch.n_tiles * (vit_tile + projector_tile) + llm)


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini-internvl-2b")
    parser.add_argument("--samples-per-micro", type=int, default=2)
    parser.add_argument("--micro", type=int, default=4, help="micro-batches per step")
    parser.add_argument("--tiles", type=int, default=7)
    parser.add_argument("--text", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    parser.add_argument("--fused", choices=["on", "off"], default="on", help="AdamW's fused kernel")
    parser.add_argument("--compile", action="store_true", help="torch.compile each layer (ModelConfig.compile)")
    parser.add_argument("--checkpointing", choices=["both", "off", "on"], default="both")
    args = parser.parse_args()

    device = torch.device(args.device)
    runtime = Runtime(0, 1, device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    torch.manual_seed(0)
    settings = ModelConfig(
        preset=args.preset, compile=args.compile, gradient_checkpointing=args.checkpointing == "on"
    )
    model = build_model(args.preset, VOCAB, IMG_CONTEXT, settings, device=device)
    model.train()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-5, fused=args.fused == "on"))
    per_tile = model.config.image_seq_length
    generator = torch.Generator().manual_seed(0)
    micro = [
        synthetic_batch(args.samples_per_micro, args.tiles, args.text, per_tile, generator)
        for _ in range(args.micro)
    ]
    tokens = sum(int(b.attention_mask.sum()) for b in micro)
    tiles = sum(b.n_tiles for b in micro)

    bf16 = cuda
    started = time.perf_counter()
    train_step(model, optimizer, micro, runtime, bf16=bf16, grad_clip=1.0)  # warm-up, optimizer state
    _sync(cuda)
    first_step_s = time.perf_counter() - started  # includes compiling, with --compile
    flops = sum(model_flops(model.config, b) for b in micro)

    result = {
        "gpu": name,
        "preset": args.preset,
        "params": parameter_count(model),
        "tokens_per_step": tokens,
        "tiles_per_step": tiles,
        "model_flops_per_step": flops,
        "fused_adamw": args.fused == "on",
        "compile": args.compile,
        "first_step_s": round(first_step_s, 1),
    }
    for checkpointing in {"both": (False, True), "off": (False,), "on": (True,)}[args.checkpointing]:
        if checkpointing and not settings.gradient_checkpointing:
            enable_activation_checkpointing(model)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            train_step(model, optimizer, micro, runtime, bf16=bf16, grad_clip=1.0)
            _sync(cuda)
            start = time.perf_counter()
            for _ in range(args.steps):
                train_step(model, optimizer, micro, runtime, bf16=bf16, grad_clip=1.0)
            _sync(cuda)
            seconds = (time.perf_counter() - start) / args.steps
        except torch.OutOfMemoryError:
            result[f"checkpointing={checkpointing}"] = "out of memory"
            torch.cuda.empty_cache()
            continue
        result[f"checkpointing={checkpointing}"] = {
            "step_s": round(seconds, 4),
            "tokens_per_s": round(tokens / seconds),
            "tiles_per_s": round(tiles / seconds, 1),
            "achieved_tflops": round(flops / seconds / 1e12, 1),
            "mfu": round(flops / seconds / peak, 4) if peak else None,
            "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
