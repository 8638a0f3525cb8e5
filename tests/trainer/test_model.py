"""Model presets: the report's 26B numbers (on the meta device, no memory), the tiny model, freezing."""

import pytest
import torch

from trainer.model import (
    ModelConfig,
    build_model,
    freeze_language_model,
    language_layers,
    parameter_count,
    vision_layers,
    visual_tokens_per_tile,
)

VOCAB = 92553  # InternLM2's 92544 + InternVL's added tokens


@pytest.fixture(scope="module")
def big():
    return build_model("internvl-1.5-26b", VOCAB, VOCAB - 1, device="meta")


def test_26b_preset_has_the_report_dimensions(big):
    vision, text = big.config.vision_config, big.config.text_config
    assert (vision.hidden_size, vision.num_attention_heads, vision.intermediate_size) == (3200, 25, 12800)
    assert len(vision_layers(big)) == 45 and vision.patch_size == (14, 14) and vision.image_size == (448, 448)
    assert vision.norm_type == "rms_norm" and vision.use_qk_norm and not vision.attention_bias
    assert big.config.downsample_ratio == 0.5 and visual_tokens_per_tile(big.config) == 256
    projector = big.model.multi_modal_projector
    assert projector.layer_norm.normalized_shape == (12800,)
    assert (projector.linear_1.in_features, projector.linear_1.out_features) == (12800, 6144)
    assert (projector.linear_2.in_features, projector.linear_2.out_features) == (6144, 6144)
    assert (text.hidden_size, text.intermediate_size, text.num_attention_heads, text.num_key_value_heads) == (
        6144,
        16384,
        48,
        8,
    )
    assert len(language_layers(big)) == 48 and type(big.model.language_model).__name__ == "LlamaModel"
    # 26B in all (InternVL-Chat-V1-5 is 25.5B): ~5.5B vision, ~19.9B language, 0.1B projector.
    assert 25.0e9 < parameter_count(big) < 26.0e9
    assert 5.4e9 < parameter_count(big.model.vision_tower) < 5.7e9


def test_stage1_freezing_leaves_only_vision_and_projector_trainable(big):
    freeze_language_model(big)
    trainable = {name.split(".")[1] for name, p in big.named_parameters() if p.requires_grad}
    assert trainable == {"vision_tower", "multi_modal_projector"}
    assert not big.lm_head.weight.requires_grad


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("internvl-9000", 100, 99)


def test_drop_path_acts_in_training_only():
    torch.manual_seed(0)
    model = build_model("tiny", 300, 299, ModelConfig(drop_path_rate=0.5))
    pixels = torch.randn(4, 3, 448, 448)
    tower = model.model.vision_tower
    tower.eval()
    with torch.no_grad():
        assert torch.equal(tower(pixels).last_hidden_state, tower(pixels).last_hidden_state)
        tower.train()
        torch.manual_seed(1)
        first = tower(pixels).last_hidden_state
        torch.manual_seed(2)
        second = tower(pixels).last_hidden_state
    assert not torch.equal(first, second)
