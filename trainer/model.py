"""The InternVL-1.5 model (ViT-MLP-LLM, SPEC §4), built from ``transformers`` classes.

Nothing here re-implements a layer: ``InternVLForConditionalGeneration`` already has InternViT
(RMSNorm, QK-norm, layer scale), pixel shuffle and the MLP projector, and takes any causal LM
as its language model. This module only holds the presets (the report's 26B model, and a tiny
one for CPU tests), drop-path (which the ``transformers`` port leaves out) and freezing.

>>> from trainer.model import build_model
>>> model = build_model("tiny", vocab_size=512, image_token_id=500)
>>> visual_tokens_per_tile(model.config)
64
"""

from collections.abc import Callable
from contextlib import nullcontext

import torch
from pydantic import Field
from torch import nn

from pipelines._imports import require
from pipelines._model import ConfigModel


class ModelConfig(ConfigModel):
    """Which model to build and how it behaves while training."""

    preset: str = Field("tiny", description="a name in PRESETS: 'internvl-1.5-26b' or 'tiny'")
    drop_path_rate: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="stochastic depth of InternViT; rate of the last layer, linear from 0",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute layer activations in the backward pass"
    )
    attn_implementation: str = Field(
        "auto",
        description="'auto' (flash_attention_2 on a GPU where flash-attn is installed, else sdpa_packed), "
        "'sdpa_packed' (trainer.attention: one sdpa call per packed sample), 'sdpa', 'eager', 'flex_attention' "
        "or 'flash_attention_2'",
    )
    compile: bool = Field(
        False,
        description="torch.compile each InternViT and LLM layer (regional: one layer's compile time; "
        "fuses the norms, activations and rotary embedding between the matrix products)",
    )


def _internvl_26b(vocab_size: int, image_token_id: int):
    """InternViT-6B-448px-V1.5 (45 of 48 layers) + MLP + InternLM2-20B dimensions as a Llama config."""
    transformers = require("transformers", "train")
    vision = transformers.InternVLVisionConfig(
        hidden_size=3200,
        num_hidden_layers=45,
        num_attention_heads=25,
        intermediate_size=12800,
        hidden_act="gelu",
        norm_type="rms_norm",
        use_qk_norm=True,
        attention_bias=False,
        layer_norm_eps=1e-6,
        layer_scale_init_value=0.1,
        image_size=448,
        patch_size=14,
        use_mean_pooling=True,  # no final norm: the LLM sees the last layer's output, as in InternVL
    )
    text = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=6144,
        intermediate_size=16384,
        num_hidden_layers=48,
        num_attention_heads=48,
        num_key_value_heads=8,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        attention_bias=False,
        tie_word_embeddings=False,
    )
    return vision, text


def _tiny(vocab_size: int, image_token_id: int):
    """A few-million-parameter model with the same structure, for CPU tests.

    Patches of 28 pixels make a 448px tile 16x16 patches, so 64 visual tokens per tile after the
    pixel shuffle instead of 256: same code paths, a quarter of the sequence.
    """
    transformers = require("transformers", "train")
    vision = transformers.InternVLVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        norm_type="rms_norm",
        use_qk_norm=True,
        image_size=448,
        patch_size=28,
        use_mean_pooling=True,
    )
    text = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    )
    return vision, text


def _mini_2b(vocab_size: int, image_token_id: int):
    """Mini-InternVL-Chat-2B-V1-5's shape: InternViT-300M-448px + InternLM2-1.8B dimensions (2.2B)."""
    transformers = require("transformers", "train")
    vision = transformers.InternVLVisionConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        norm_type="layer_norm",
        use_qk_norm=False,
        attention_bias=True,
        layer_scale_init_value=0.1,
        image_size=448,
        patch_size=14,
        use_mean_pooling=True,
    )
    text = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=False,
    )
    return vision, text


#: Model presets by name: each returns the (vision, text) configs for a vocabulary.
PRESETS: dict[str, Callable] = {
    "internvl-1.5-26b": _internvl_26b,
    "mini-internvl-2b": _mini_2b,
    "tiny": _tiny,
}


def build_config(preset: str, vocab_size: int, image_token_id: int, attn_implementation: str = "auto"):
    """The ``InternVLConfig`` of a preset, for a tokenizer with ``vocab_size`` tokens."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    if not 0 <= image_token_id < vocab_size:
        raise ValueError(f"image_token_id {image_token_id} is outside the vocabulary of {vocab_size}")
    transformers = require("transformers", "train")
    vision, text = PRESETS[preset](vocab_size, image_token_id)
    config = transformers.InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",  # drop the CLS token before the pixel shuffle
        tie_word_embeddings=False,
    )
    config.image_seq_length = visual_tokens_per_tile(config)
    config._attn_implementation = resolve_attention(attn_implementation)
    return config


def resolve_attention(name: str) -> str:
    """``auto``: varlen flash attention where it can run (a GPU, ``flash-attn`` installed), else
    ``sdpa_packed`` (``trainer.attention``).

    Packed sequences are exact with every choice; both of these skip the work across samples,
    while ``sdpa``, ``eager`` and ``flex_attention`` take a mask over the whole pack.
    """
    from . import attention

    attention.register()
    if name != "auto":
        return name
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return attention.NAME


def visual_tokens_per_tile(config) -> int:
    """Tokens one tile gives the LLM: patches per side squared, shrunk by the pixel shuffle."""
    vision = config.vision_config
    patches = (vision.image_size[0] // vision.patch_size[0]) * (vision.image_size[1] // vision.patch_size[1])
    return int(patches * config.downsample_ratio**2)


def build_model(
    preset: str,
    vocab_size: int,
    image_token_id: int,
    settings: ModelConfig | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """A freshly initialised ``InternVLForConditionalGeneration`` for a preset.

    Pass ``device="meta"`` to get the structure without memory (to count parameters of the 26B
    model, or to shard it before materialising).
    """
    settings = settings or ModelConfig(preset=preset)
    transformers = require("transformers", "train")
    config = build_config(preset, vocab_size, image_token_id, settings.attn_implementation)
    with torch.device(device) if device is not None else nullcontext():
        model = transformers.InternVLForConditionalGeneration(config)
    if settings.drop_path_rate > 0:
        add_drop_path(model, settings.drop_path_rate)
    if settings.gradient_checkpointing:
        enable_activation_checkpointing(model)
    if settings.compile:
        compile_layers(model)
    return model


def compile_layers(model: nn.Module) -> None:
    """Compile every InternViT and LLM layer in place (before FSDP wraps them, as FSDP2 expects).

    All layers of a tower share their code, so the compiled graph is reused across them: the
    compile time is that of one layer per tower, not of the whole model.
    """
    for layer in [*vision_layers(model), *language_layers(model)]:
        layer.compile()


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each layer in the backward pass (non-reentrant, so frozen inputs are fine)."""
    enable = getattr(model, "activation_checkpointing_enable", None)  # its name from transformers 5.2x on
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def vision_layers(model: nn.Module) -> nn.ModuleList:
    """InternViT's encoder layers."""
    return model.model.vision_tower.encoder.layer


def language_layers(model: nn.Module) -> nn.ModuleList:
    """The LLM's decoder layers."""
    return model.model.language_model.layers


def add_drop_path(model: nn.Module, rate: float) -> None:
    """Stochastic depth on InternViT's two residual branches, rate rising linearly to ``rate``.

    InternViT drops the attention and the MLP branch of each sample separately; in the
    ``transformers`` layer both branches are a submodule output scaled by layer scale before the
    residual sum, so zeroing the submodule's output per sample (and rescaling the kept ones) is
    exactly that. Hooks act only in training mode.
    """
    layers = vision_layers(model)
    rates = torch.linspace(0, rate, len(layers)).tolist()
    for layer, layer_rate in zip(layers, rates, strict=True):
        if layer_rate > 0:
            layer.attention.register_forward_hook(_DropPathHook(layer_rate))
            layer.mlp.register_forward_hook(_DropPathHook(layer_rate))


class _DropPathHook:
    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, module: nn.Module, args, output):
        if not module.training:
            return output
        branch = output[0] if isinstance(output, tuple) else output
        keep = 1.0 - self.rate
        mask = branch.new_empty((branch.shape[0],) + (1,) * (branch.dim() - 1)).bernoulli_(keep).div_(keep)
        dropped = branch * mask
        return (dropped, *output[1:]) if isinstance(output, tuple) else dropped


def freeze_language_model(model: nn.Module) -> None:
    """Stage 1: the LLM (embeddings, decoder, head) keeps its weights; InternViT and the MLP learn."""
    for module in (model.model.language_model, model.lm_head):
        module.requires_grad_(False)


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
