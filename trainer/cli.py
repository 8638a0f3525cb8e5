"""``vlmix train``: train from the pipeline's shards with a recipe.

vlmix train --recipe stage1 --shards DIR --tokenizer DIR [--model internvl-1.5-26b] [--out DIR]
vlmix train --recipe stage2 --shards DIR --model tiny --steps 50      # CPU demo, tokenizer made here
vlmix train ... --launcher torchrun --nproc 8                         # one node, 8 processes
vlmix train ... --launcher ray --workers 16 --gpu --ray-address ADDR  # a Ray cluster
"""

import argparse
import json
from pathlib import Path

from pipelines._imports import require

# Names only, so `vlmix train --help` works before the heavy imports (a test keeps them in step
# with trainer.model.PRESETS and trainer.recipes.RECIPES).
RECIPE_NAMES = ("stage1", "stage2")
PRESET_NAMES = ("internvl-1.5-26b", "mini-internvl-2b", "tiny")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmix train", description="Train InternVL from vlmix shards.")
    parser.add_argument(
        "--recipe", choices=RECIPE_NAMES, required=True, help="stage1 (LLM frozen) or stage2 (all)"
    )
    parser.add_argument("--shards", required=True, help="directory (or glob) of the WebDataset .tar shards")
    parser.add_argument("--model", choices=PRESET_NAMES, default="internvl-1.5-26b", help="model preset")
    parser.add_argument(
        "--tokenizer",
        help="local tokenizer directory; for --model tiny a small one is trained from the shards",
    )
    parser.add_argument("--out", default="runs/train", help="checkpoints, TensorBoard logs, metrics.jsonl")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the config's 1000)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--global-batch", type=int, help="samples per optimizer step over all ranks")
    parser.add_argument("--tokens-per-batch", type=int, help="token budget of one micro-batch")
    parser.add_argument("--max-tiles", type=int, help="most tiles per image (recipe: 12)")
    parser.add_argument(
        "--resize", choices=["pil", "torch"], help="tile resize: pil (exact, default) or torch (about 4x faster)"
    )
    parser.add_argument("--context", type=int, help="context length in tokens (recipe: 4096)")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers per rank")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: only at the end)")
    parser.add_argument(
        "--checkpoint-dir", help="where checkpoints go: a path or fsspec URL such as s3://bucket/run (default OUT/checkpoints)"
    )
    parser.add_argument(
        "--no-packing", action="store_true", help="one padded row per sample instead of packed sequences"
    )
    parser.add_argument(
        "--streams", type=int, help="data streams of the run (default: ranks x workers); resume at sizes dividing it"
    )
    parser.add_argument(
        "--attn",
        choices=["auto", "sdpa_packed", "sdpa", "eager", "flex_attention", "flash_attention_2"],
        help="attention kernel (auto: varlen flash attention on a GPU with flash-attn, else sdpa_packed)",
    )
    parser.add_argument(
        "--hsdp", action="store_true", help="shard within a node, replicate across nodes (multi-node runs)"
    )
    parser.add_argument("--shard-group", type=int, help="--hsdp: ranks per shard group (default: one node's)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="auto: bf16 on GPU")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile each model layer (GPU: ~10%% faster after ~20 s)"
    )
    parser.add_argument("--no-resume", action="store_true", help="start fresh even if out has checkpoints")
    parser.add_argument("--launcher", choices=["local", "torchrun", "ray"], default="local")
    parser.add_argument("--nproc", type=int, default=1, help="torchrun: processes on this node")
    parser.add_argument("--workers", type=int, default=1, help="ray: number of training workers")
    parser.add_argument("--gpu", action="store_true", help="ray: one GPU per worker")
    parser.add_argument("--ray-address", help="ray: the cluster to join (default: a local Ray)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def config_from_args(args: argparse.Namespace):
    """The recipe's :class:`TrainConfig` with the command line's overrides."""
    require("torch", "train")
    from .recipes import RECIPES

    overrides: dict = {"out_dir": args.out, "resume": not args.no_resume}
    if args.hsdp:
        overrides["hsdp"] = True
    for flag, key in (
        ("steps", "steps"),
        ("global_batch", "global_batch_samples"),
        ("checkpoint_every", "checkpoint_every"),
        ("checkpoint_dir", "checkpoint_dir"),
        ("shard_group", "shard_group"),
        ("precision", "precision"),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    sections = {
        "optim": {"lr": args.lr},
        "data": {
            "tokens_per_batch": args.tokens_per_batch,
            "max_tiles": args.max_tiles,
            "resize": args.resize,
            "num_workers": args.num_workers,
            "packing": False if args.no_packing else None,
            "streams": args.streams,
        },
        "tokenize": {"context_length": args.context},
        "model": {"compile": True if args.compile else None, "attn_implementation": args.attn},
    }
    for section, values in sections.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            overrides[section] = given
    tokenizer = args.tokenizer or _demo_tokenizer(args)
    return RECIPES[args.recipe](shards=args.shards, tokenizer=str(tokenizer), preset=args.model, **overrides)


def _demo_tokenizer(args: argparse.Namespace) -> Path:
    """For the tiny model only: a small BPE trained on the shards' conversations (offline demo)."""
    if args.model != "tiny":
        raise SystemExit(
            f"--tokenizer is required for --model {args.model}: a local copy of InternLM2's tokenizer directory"
        )
    from .data import list_shards
    from .tokenize import train_tokenizer

    path = Path(args.out) / "tokenizer"
    if not (path / "tokenizer.json").exists():
        train_tokenizer(_shard_texts(list_shards(args.shards)), path, vocab_size=2000)
    return path


def _shard_texts(shards: list[str]):
    import webdataset as wds

    for sample in wds.tarfile_samples([{"url": url} for url in shards]):
        if "json" in sample:
            for turn in json.loads(sample["json"]).get("conversations", []):
                yield str(turn.get("value", ""))


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``argv`` may start with the word ``train`` (as ``vlmix`` passes it) or not."""
    argv = list(argv or [])
    if argv and argv[0] == "train":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if args.print_config:
        print(config.model_dump_json(indent=2))
        return 0
    if args.launcher == "ray":
        from .launch import launch_ray

        launch_ray(config, num_workers=args.workers, use_gpu=args.gpu, ray_address=args.ray_address)
    elif args.launcher == "torchrun":
        from torch.distributed.run import main as torchrun

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        config_path = out / "config.json"
        config_path.write_text(config.model_dump_json(indent=2))
        torchrun(["--nproc-per-node", str(args.nproc), "-m", "trainer.launch", str(config_path)])
    else:
        from .train import train

        train(config)
    return 0
