"""``vlmix train``: train from the pipeline's shards with a recipe.

vlmix train --recipe stage1 --shards DIR --tokenizer DIR [--model internvl-1.5-26b] [--out DIR]
vlmix train --recipe stage2 --shards DIR --model tiny --steps 50      # CPU demo, tokenizer made here
vlmix train --recipe stage2 --shards DIR --init-from runs/s1           # stage 2 from our stage 1
vlmix train ... --launcher torchrun --nproc 8                         # one node, 8 processes
vlmix train ... --launcher ray --workers 16 --gpu --ray-address ADDR  # a Ray cluster
"""

import argparse
import json
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

from pydantic import ValidationError

from pipelines._imports import require

from .settings import PRESET_NAMES, RECIPE_NAMES, TrainSettings

__all__ = ["PRESET_NAMES", "RECIPE_NAMES", "TrainSettings", "build_parser", "main", "run", "train_config"]


def build_parser() -> argparse.ArgumentParser:
    """``vlmix train``'s flags, one per :class:`TrainSettings` field (``max_tiles`` -> ``--max-tiles``).

    Only flags given on the command line reach the settings; every default is the model's own.
    """
    parser = argparse.ArgumentParser(
        prog="vlmix train", description="Train InternVL from vlmix shards.", argument_default=argparse.SUPPRESS
    )
    for name, field in TrainSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = (field.description or "").replace("%", "%%")
        if field.annotation is bool:
            if field.default is True:
                parser.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false", help=help_text)
            else:
                parser.add_argument(flag, dest=name, action="store_true", help=help_text)
            continue
        kind, choices = _scalar(field.annotation)
        if field.default is not None and not field.is_required():
            help_text += f" (default: {field.default})"
        parser.add_argument(flag, dest=name, type=kind, choices=choices, required=field.is_required(), help=help_text)
    parser.add_argument(
        "--print-config", action="store_true", default=False, help="print the resolved config and exit"
    )
    return parser


def _scalar(annotation) -> tuple[type, tuple | None]:
    """(argparse type, choices) of a field annotation such as ``int | None`` or ``Literal[...] | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        return str, get_args(annotation)
    return annotation, None


def settings_from_argv(argv: list[str]) -> tuple[TrainSettings, bool]:
    """The settings of a ``vlmix train`` command line, and whether it asked for ``--print-config``."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    print_config = args.pop("print_config")
    try:
        return TrainSettings(**args), print_config
    except ValidationError as err:
        problems = "; ".join(
            f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in err.errors()
        )
        parser.error(problems)


def train_config(settings: TrainSettings):
    """The recipe's :class:`TrainConfig` with the settings' overrides (None: the recipe's value)."""
    require("torch", "train")
    from .recipes import RECIPES

    overrides: dict = {"out_dir": settings.out, "resume": settings.resume, "init_from": settings.init_from}
    if settings.hsdp:
        overrides["hsdp"] = True
    for field, key in (
        ("steps", "steps"),
        ("global_batch", "global_batch_samples"),
        ("checkpoint_every", "checkpoint_every"),
        ("checkpoint_dir", "checkpoint_dir"),
        ("shard_group", "shard_group"),
        ("precision", "precision"),
    ):
        if getattr(settings, field) is not None:
            overrides[key] = getattr(settings, field)
    sections = {
        "optim": {"lr": settings.lr},
        "data": {
            "tokens_per_batch": settings.tokens_per_batch,
            "max_tiles": settings.max_tiles,
            "resize": settings.resize,
            "num_workers": settings.num_workers,
            "packing": None if settings.packing else False,
            "streams": settings.streams,
        },
        "tokenize": {"context_length": settings.context},
        "model": {"compile": True if settings.compile else None, "attn_implementation": settings.attn},
    }
    for section, values in sections.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            overrides[section] = given
    tokenizer = settings.tokenizer or _init_tokenizer(settings) or _demo_tokenizer(settings)
    return RECIPES[settings.recipe](
        shards=settings.shards, tokenizer=str(tokenizer), preset=settings.model, **overrides
    )


def _init_tokenizer(settings: TrainSettings) -> str | None:
    """The tokenizer of the checkpoint a run starts from (stage 2 from our stage 1), if it has one."""
    if not settings.init_from:
        return None
    from . import init

    return init.tokenizer_of(init.resolve(settings.init_from))


def _demo_tokenizer(settings: TrainSettings) -> Path:
    """For the tiny model only: a small BPE trained on the shards' conversations (offline demo)."""
    if settings.model != "tiny":
        raise SystemExit(
            f"--tokenizer is required for --model {settings.model}: a local copy of InternLM2's tokenizer directory"
        )
    from .data import list_shards
    from .tokenization import train_tokenizer

    path = Path(settings.out) / "tokenizer"
    if not (path / "tokenizer.json").exists():
        train_tokenizer(_shard_texts(list_shards(settings.shards)), path, vocab_size=2000)
    return path


def run(settings: TrainSettings) -> None:
    """Train with ``settings``: build the TrainConfig, then run it on the chosen launcher."""
    config = train_config(settings)
    if settings.launcher == "ray":
        from .launch import launch_ray

        launch_ray(config, num_workers=settings.workers, use_gpu=settings.gpu, ray_address=settings.ray_address)
    elif settings.launcher == "torchrun":
        from torch.distributed.run import main as torchrun

        out = Path(settings.out)
        out.mkdir(parents=True, exist_ok=True)
        config_path = out / "config.json"
        config_path.write_text(config.model_dump_json(indent=2))
        torchrun(["--nproc-per-node", str(settings.nproc), "-m", "trainer.launch", str(config_path)])
    else:
        from .train import train

        train(config)


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
    settings, print_config = settings_from_argv(argv)
    if print_config:
        print(train_config(settings).model_dump_json(indent=2))
        return 0
    run(settings)
    return 0
