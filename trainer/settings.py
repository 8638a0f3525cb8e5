"""The trainer's own settings: every ``vlmix train`` option, as one validated model.

``vlmix train``'s flags are generated from :class:`TrainSettings` (``--max-tiles`` is
``max_tiles``; a bool that defaults to True is turned off by ``--no-NAME``, e.g. ``--no-packing``), and the
flow's ``train:`` section is this model with flow defaults, so the two cannot drift apart.
Importing this module needs no torch.

>>> settings = TrainSettings(recipe="stage2", shards="data/shards", model="tiny", steps=50)
>>> settings.max_tiles is None  # None: the recipe's value
True
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from pipelines._model import ConfigModel

Recipe = Literal["stage1", "stage2"]
Preset = Literal["internvl-1.5-26b", "mini-internvl-2b", "tiny"]
Attention = Literal["auto", "sdpa_packed", "sdpa", "eager", "flex_attention", "flash_attention_2"]

# Names only, so `vlmix train --help` works before the heavy imports (a test keeps them in step
# with trainer.model.PRESETS and trainer.recipes.RECIPES).
RECIPE_NAMES: tuple[str, ...] = get_args(Recipe)
PRESET_NAMES: tuple[str, ...] = get_args(Preset)


class TrainSettings(ConfigModel):
    """One training run: recipe, data, model, overrides of the recipe, and how it is launched.

    ``None`` in an override field means "the recipe's (or the TrainConfig's) own value".
    """

    recipe: Recipe = Field(description="stage1 (LLM frozen) or stage2 (all)")
    shards: str = Field(description="directory (or glob) of the WebDataset .tar shards")
    model: Preset = Field("internvl-1.5-26b", description="model preset")
    tokenizer: str | None = Field(
        None, description="local tokenizer directory; for --model tiny a small one is trained from the shards"
    )
    out: str = Field("runs/train", description="checkpoints, TensorBoard logs, metrics.jsonl")
    init_from: str | None = Field(
        None,
        description="start from these weights: a run or checkpoint of ours (stage 1 for stage 2; its tokenizer "
        "is reused unless --tokenizer is given) or a folder of InternVL-Chat-V1-5 safetensors",
    )
    steps: int | None = Field(None, ge=1, description="optimizer steps (default: the config's 1000)")
    lr: float | None = Field(None, gt=0, description="peak learning rate (default: the recipe's)")
    global_batch: int | None = Field(None, ge=1, description="samples per optimizer step over all ranks")
    tokens_per_batch: int | None = Field(None, ge=1, description="token budget of one micro-batch")
    max_tiles: int | None = Field(None, ge=1, le=40, description="most tiles per image (recipe: 12)")
    resize: Literal["pil", "torch"] | None = Field(
        None, description="tile resize: pil (exact, default) or torch (about 4x faster)"
    )
    context: int | None = Field(None, ge=64, description="context length in tokens (recipe: 4096)")
    num_workers: int | None = Field(None, ge=0, description="DataLoader workers per rank")
    checkpoint_every: int | None = Field(None, ge=0, description="steps between checkpoints (0: only at the end)")
    checkpoint_dir: str | None = Field(
        None, description="where checkpoints go: a path or fsspec URL such as s3://bucket/run (default OUT/checkpoints)"
    )
    packing: bool = Field(True, description="pack whole samples into sequences (--no-packing: one padded row per sample)")
    streams: int | None = Field(
        None, ge=1, description="data streams of the run (default: ranks x workers); resume at sizes dividing it"
    )
    attn: Attention | None = Field(
        None, description="attention kernel (auto: varlen flash attention on a GPU with flash-attn, else sdpa_packed)"
    )
    hsdp: bool = Field(False, description="shard within a node, replicate across nodes (multi-node runs)")
    shard_group: int | None = Field(None, ge=1, description="--hsdp: ranks per shard group (default: one node's)")
    precision: Literal["auto", "bf16", "fp32"] | None = Field(None, description="auto: bf16 on GPU")
    compile: bool = Field(False, description="torch.compile each model layer (GPU: ~10% faster after ~20 s)")
    resume: bool = Field(True, description="resume from out's latest checkpoint (--no-resume: start fresh)")
    launcher: Literal["local", "torchrun", "ray"] = Field("local", description="where the ranks run")
    nproc: int = Field(1, ge=1, description="torchrun: processes on this node")
    workers: int = Field(1, ge=1, description="ray: number of training workers")
    gpu: bool = Field(False, description="ray: one GPU per worker")
    ray_address: str | None = Field(None, description="ray: the cluster to join (default: a local Ray)")

