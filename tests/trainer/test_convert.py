"""Checkpoint conversion from the released InternVL-Chat-V1-5 layout (fused InternViT qkv, InternLM2 wqkv)."""

import re

import pytest
import torch

from trainer.convert import from_internvl_chat, load_internvl_chat, save_internvl_chat, to_internvl_chat
from trainer.model import build_model

# The key patterns of the released checkpoint (layer numbers as N), for a model without qkv bias.
RELEASED_PATTERNS = {
    "vision_model.embeddings.class_embedding",
    "vision_model.embeddings.position_embedding",
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.patch_embedding.bias",
    *(
        f"vision_model.encoder.layers.N.{name}"
        for name in (
            "attn.qkv.weight", "attn.q_norm.weight", "attn.k_norm.weight", "attn.proj.weight", "attn.proj.bias",
            "ls1", "ls2", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
            "norm1.weight", "norm2.weight",
        )
    ),
    "mlp1.N.weight",
    "mlp1.N.bias",
    "language_model.model.tok_embeddings.weight",
    *(
        f"language_model.model.layers.N.{name}"
        for name in (
            "attention.wqkv.weight", "attention.wo.weight", "feed_forward.w1.weight", "feed_forward.w2.weight",
            "feed_forward.w3.weight", "attention_norm.weight", "ffn_norm.weight",
        )
    ),
    "language_model.model.norm.weight",
    "language_model.output.weight",
}  # fmt: skip


def _model(seed: int):
    torch.manual_seed(seed)
    model = build_model("tiny", 300, 299).eval()
    with torch.no_grad():  # layer scales and position embeddings start constant: make them tell
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def _logits(model):
    torch.manual_seed(123)
    ids = torch.randint(0, 290, (2, 80))
    ids[:, 5 : 5 + 64] = 299  # one tile's image tokens per sequence
    with torch.no_grad():
        return model(input_ids=ids, pixel_values=torch.randn(2, 3, 448, 448)).logits


def test_export_has_the_released_layout():
    released = to_internvl_chat(_model(0).state_dict(), _model(0).config)
    assert {re.sub(r"\.\d+\.", ".N.", key) for key in released} == RELEASED_PATTERNS
    text = _model(0).config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    wqkv = released["language_model.model.layers.0.attention.wqkv.weight"]
    assert wqkv.shape == (
        (text.num_attention_heads + 2 * text.num_key_value_heads) * head_dim,
        text.hidden_size,
    )


def test_internlm2_wqkv_is_split_by_key_value_group():
    """A fused wqkv built by hand the InternLM2 way: per kv head, its query heads, its key, its value."""
    model = _model(0)
    config = model.config
    text = config.text_config
    kv, heads, hidden = text.num_key_value_heads, text.num_attention_heads, text.hidden_size
    groups, head_dim = heads // kv, hidden // heads
    q = torch.randn(heads, head_dim, hidden)
    k = torch.randn(kv, head_dim, hidden)
    v = torch.randn(kv, head_dim, hidden)
    rows = []
    for h in range(kv):
        rows += [q[h * groups + g] for g in range(groups)] + [k[h], v[h]]
    released = to_internvl_chat(model.state_dict(), config)
    released["language_model.model.layers.1.attention.wqkv.weight"] = torch.cat(rows)
    ours = from_internvl_chat(released, config)
    prefix = "model.language_model.layers.1.self_attn."
    assert torch.equal(ours[prefix + "q_proj.weight"], q.reshape(heads * head_dim, hidden))
    assert torch.equal(ours[prefix + "k_proj.weight"], k.reshape(kv * head_dim, hidden))
    assert torch.equal(ours[prefix + "v_proj.weight"], v.reshape(kv * head_dim, hidden))


def test_round_trip_through_a_released_checkpoint_gives_identical_logits(tmp_path):
    original = _model(0)
    path = save_internvl_chat(original, tmp_path / "InternVL-Chat-V1-5-tiny")
    assert path.name == "model.safetensors" and not list(tmp_path.rglob("*.tmp"))
    restored = _model(1)  # different weights until loaded
    assert not torch.equal(_logits(restored), _logits(original))
    load_internvl_chat(restored, path.parent)
    assert torch.equal(_logits(restored), _logits(original))


def test_unknown_tensors_are_an_error():
    model = _model(0)
    released = to_internvl_chat(model.state_dict(), model.config)
    released["language_model.model.layers.0.attention.rotary_emb.inv_freq_extra"] = torch.zeros(1)
    with pytest.raises(KeyError, match="rotary_emb"):
        from_internvl_chat(released, model.config)
