"""Weights of the released InternVL-Chat-V1-5 checkpoint, in and out of this trainer's model.

The release (``InternVLChatModel`` with ``trust_remote_code``) names its parts
``vision_model.*`` (InternViT, fused ``attn.qkv``), ``mlp1.{0,1,3}`` (the projector) and
``language_model.*`` (InternLM2: fused ``attention.wqkv``, ``feed_forward.w1/w2/w3``). Here the
same tensors live under ``transformers``' InternVL and Llama names; InternLM2 uses the same
rotate-half RoPE as Llama, so splitting the fused projections is all the conversion there is.

InternLM2 packs ``wqkv`` by key/value head: for each of the ``kv`` heads, its ``groups`` query
heads, then its key head, then its value head, ``head_dim`` rows each. Query head ``h*groups+g``
is the one that shares key/value head ``h``, which is Llama's grouped-query order.

>>> model = build_model("internvl-1.5-26b", 92553, 92546)  # doctest: +SKIP
>>> load_internvl_chat(model, "/models/InternVL-Chat-V1-5")  # doctest: +SKIP
"""

import json
from pathlib import Path

import torch

from pipelines._imports import require

_VISION = [  # (released name, ours) inside a vision layer
    ("attn.q_norm.weight", "attention.q_norm.weight"),
    ("attn.k_norm.weight", "attention.k_norm.weight"),
    ("attn.proj.weight", "attention.projection_layer.weight"),
    ("attn.proj.bias", "attention.projection_layer.bias"),
    ("ls1", "lambda_1"),
    ("ls2", "lambda_2"),
    ("mlp.fc1.weight", "mlp.fc1.weight"),
    ("mlp.fc1.bias", "mlp.fc1.bias"),
    ("mlp.fc2.weight", "mlp.fc2.weight"),
    ("mlp.fc2.bias", "mlp.fc2.bias"),
    ("norm1.weight", "layernorm_before.weight"),
    ("norm1.bias", "layernorm_before.bias"),
    ("norm2.weight", "layernorm_after.weight"),
    ("norm2.bias", "layernorm_after.bias"),
]
_LANGUAGE = [  # inside a decoder layer
    ("attention.wo.weight", "self_attn.o_proj.weight"),
    ("feed_forward.w1.weight", "mlp.gate_proj.weight"),
    ("feed_forward.w3.weight", "mlp.up_proj.weight"),
    ("feed_forward.w2.weight", "mlp.down_proj.weight"),
    ("attention_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
]
_GLOBAL = [
    ("vision_model.embeddings.class_embedding", "model.vision_tower.embeddings.cls_token"),
    ("vision_model.embeddings.position_embedding", "model.vision_tower.embeddings.position_embeddings"),
    (
        "vision_model.embeddings.patch_embedding.weight",
        "model.vision_tower.embeddings.patch_embeddings.projection.weight",
    ),
    (
        "vision_model.embeddings.patch_embedding.bias",
        "model.vision_tower.embeddings.patch_embeddings.projection.bias",
    ),
    ("mlp1.0.weight", "model.multi_modal_projector.layer_norm.weight"),
    ("mlp1.0.bias", "model.multi_modal_projector.layer_norm.bias"),
    ("mlp1.1.weight", "model.multi_modal_projector.linear_1.weight"),
    ("mlp1.1.bias", "model.multi_modal_projector.linear_1.bias"),
    ("mlp1.3.weight", "model.multi_modal_projector.linear_2.weight"),
    ("mlp1.3.bias", "model.multi_modal_projector.linear_2.bias"),
    ("language_model.model.tok_embeddings.weight", "model.language_model.embed_tokens.weight"),
    ("language_model.model.norm.weight", "model.language_model.norm.weight"),
    ("language_model.output.weight", "lm_head.weight"),
]
_VISION_PREFIX = ("vision_model.encoder.layers.{i}.", "model.vision_tower.encoder.layer.{i}.")
_LANGUAGE_PREFIX = ("language_model.model.layers.{i}.", "model.language_model.layers.{i}.")


def _renames(config) -> list[tuple[str, str]]:
    pairs = list(_GLOBAL)
    for i in range(config.vision_config.num_hidden_layers):
        theirs, ours = (p.format(i=i) for p in _VISION_PREFIX)
        pairs += [(theirs + a, ours + b) for a, b in _VISION]
    for i in range(config.text_config.num_hidden_layers):
        theirs, ours = (p.format(i=i) for p in _LANGUAGE_PREFIX)
        pairs += [(theirs + a, ours + b) for a, b in _LANGUAGE]
    return pairs


def _wqkv_shape(config) -> tuple[int, int, int, int]:
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    kv = text.num_key_value_heads
    return kv, text.num_attention_heads // kv, head_dim, text.hidden_size


def from_internvl_chat(released: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """The released state dict renamed and split into this model's keys (an error lists leftovers)."""
    released = dict(released)
    ours = {}
    for theirs, name in _renames(config):
        if theirs in released:
            ours[name] = released.pop(theirs)
    for i in range(config.vision_config.num_hidden_layers):
        theirs, prefix = (p.format(i=i) for p in _VISION_PREFIX)
        for part in ("weight", "bias"):
            fused = released.pop(f"{theirs}attn.qkv.{part}", None)
            if fused is not None:  # rows: all query, then all key, then all value
                for name, piece in zip(("q_proj", "k_proj", "v_proj"), fused.chunk(3), strict=True):
                    ours[f"{prefix}attention.{name}.{part}"] = piece.contiguous()
    kv, groups, head_dim, hidden = _wqkv_shape(config)
    for i in range(config.text_config.num_hidden_layers):
        theirs, prefix = (p.format(i=i) for p in _LANGUAGE_PREFIX)
        fused = released.pop(f"{theirs}attention.wqkv.weight").view(kv, groups + 2, head_dim, hidden)
        ours[f"{prefix}self_attn.q_proj.weight"] = fused[:, :groups].reshape(-1, hidden).contiguous()
        ours[f"{prefix}self_attn.k_proj.weight"] = fused[:, groups].reshape(-1, hidden).contiguous()
        ours[f"{prefix}self_attn.v_proj.weight"] = fused[:, groups + 1].reshape(-1, hidden).contiguous()
    if released:
        raise KeyError(
            f"{len(released)} tensors of the checkpoint have no place here: {sorted(released)[:8]}"
        )
    return ours


def to_internvl_chat(ours: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """This model's state dict in the released layout (the inverse of :func:`from_internvl_chat`)."""
    ours = dict(ours)
    released = {}
    for theirs, name in _renames(config):
        if name in ours:
            released[theirs] = ours.pop(name)
    for i in range(config.vision_config.num_hidden_layers):
        theirs, prefix = (p.format(i=i) for p in _VISION_PREFIX)
        for part in ("weight", "bias"):
            names = [f"{prefix}attention.{n}.{part}" for n in ("q_proj", "k_proj", "v_proj")]
            if names[0] in ours:
                released[f"{theirs}attn.qkv.{part}"] = torch.cat([ours.pop(n) for n in names])
    kv, groups, head_dim, hidden = _wqkv_shape(config)
    for i in range(config.text_config.num_hidden_layers):
        theirs, prefix = (p.format(i=i) for p in _LANGUAGE_PREFIX)
        q = ours.pop(f"{prefix}self_attn.q_proj.weight").view(kv, groups, head_dim, hidden)
        k = ours.pop(f"{prefix}self_attn.k_proj.weight").view(kv, 1, head_dim, hidden)
        v = ours.pop(f"{prefix}self_attn.v_proj.weight").view(kv, 1, head_dim, hidden)
        released[f"{theirs}attention.wqkv.weight"] = torch.cat([q, k, v], dim=1).reshape(-1, hidden)
    if ours:
        raise KeyError(f"{len(ours)} tensors of the model have no place in the release: {sorted(ours)[:8]}")
    return released


def read_safetensors(directory: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint directory (one ``*.safetensors`` or an index of shards)."""
    safetensors_torch = require("safetensors.torch", "train")
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {directory}")
    tensors = {}
    for name in files:
        tensors.update(safetensors_torch.load_file(str(directory / name)))
    return tensors


def load_internvl_chat(model: torch.nn.Module, directory: str | Path) -> None:
    """Load a local InternVL-Chat-V1-5-layout checkpoint into ``model``; every tensor must fit."""
    converted = from_internvl_chat(read_safetensors(directory), model.config)
    state = model.state_dict()
    converted = {k: v.to(state[k].dtype) if k in state else v for k, v in converted.items()}
    model.load_state_dict(converted, strict=True)


def save_internvl_chat(model: torch.nn.Module, directory: str | Path) -> Path:
    """Write ``model`` in the released layout as one ``model.safetensors`` (temporary name, renamed)."""
    safetensors_torch = require("safetensors.torch", "train")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    released = {
        k: v.detach().contiguous() for k, v in to_internvl_chat(model.state_dict(), model.config).items()
    }
    tmp = directory / "model.safetensors.tmp"
    safetensors_torch.save_file(released, str(tmp), metadata={"format": "pt"})
    final = directory / "model.safetensors"
    tmp.rename(final)
    return final
