"""The two public InternVL-1.5 recipes (SPEC §4) as functions that return a :class:`TrainConfig`.

Only what the recipe fixes is set here; data, tokenizer and output come from the caller, and
keyword overrides replace any field (a dict merges into a section: ``optim={"lr": 3e-3}``).

>>> config = stage1(shards="data/shards", tokenizer="tokenizers/internlm2")  # doctest: +SKIP
"""

from collections.abc import Callable

from .data import DataConfig
from .model import ModelConfig
from .optim import OptimConfig
from .tokenization import TokenizeConfig
from .train import TrainConfig


def stage1(shards: str, tokenizer: str, preset: str = "internvl-1.5-26b", **overrides) -> TrainConfig:
    """Pre-training: InternViT + MLP learn, the LLM is frozen; global batch 2048, lr 1e-5,
    weight decay 0.05, 100 warm-up steps then cosine, drop-path 0.2, bf16, gradient
    checkpointing, up to 12 tiles + thumbnail, context 4096."""
    return _build(
        "stage1",
        dict(
            model=ModelConfig(preset=preset, drop_path_rate=0.2, gradient_checkpointing=True),
            data=DataConfig(shards=shards, max_tiles=12),
            tokenize=TokenizeConfig(tokenizer=tokenizer, context_length=4096),
            optim=OptimConfig(lr=1e-5, weight_decay=0.05, warmup_steps=100),
            freeze_llm=True,
            global_batch_samples=2048,
        ),
        overrides,
    )


def stage2(shards: str, tokenizer: str, preset: str = "internvl-1.5-26b", **overrides) -> TrainConfig:
    """Fine-tuning: all parameters learn; global batch 1024, lr 2e-5, weight decay 0.05,
    warm-up 3% of the steps then cosine, drop-path 0.4, bf16, gradient checkpointing."""
    return _build(
        "stage2",
        dict(
            model=ModelConfig(preset=preset, drop_path_rate=0.4, gradient_checkpointing=True),
            data=DataConfig(shards=shards, max_tiles=12),
            tokenize=TokenizeConfig(tokenizer=tokenizer, context_length=4096),
            optim=OptimConfig(lr=2e-5, weight_decay=0.05, warmup_ratio=0.03),
            freeze_llm=False,
            global_batch_samples=1024,
        ),
        overrides,
    )


def _build(name: str, recipe: dict, overrides: dict) -> TrainConfig:
    """The recipe with ``overrides`` merged in; nested sections merge key by key."""
    merged = {
        key: value.model_dump() if hasattr(value, "model_dump") else value for key, value in recipe.items()
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return TrainConfig(recipe=name, **merged)


#: Recipes by name, as the CLI's ``--recipe`` knows them.
RECIPES: dict[str, Callable[..., TrainConfig]] = {"stage1": stage1, "stage2": stage2}
