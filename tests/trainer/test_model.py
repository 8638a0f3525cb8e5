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


def test_compiled_layers_compute_the_same_loss_and_gradients():
    """ModelConfig.compile swaps every layer's forward for an Inductor graph: same numbers."""
    torch.manual_seed(0)
    eager = build_model("tiny", 300, 299)
    compiled = build_model("tiny", 300, 299, ModelConfig(compile=True))
    compiled.load_state_dict(eager.state_dict())
    layers = [*vision_layers(compiled), *language_layers(compiled)]
    assert all(layer._compiled_call_impl is not None for layer in layers)
    assert vision_layers(eager)[0]._compiled_call_impl is None
    pixels = torch.randn(1, 3, 448, 448)
    ids = torch.cat([torch.full((1, 64), 299), torch.randint(0, 290, (1, 16))], dim=1)
    results = []
    for model in (eager, compiled):
        out = model(input_ids=ids, pixel_values=pixels, labels=ids)
        out.loss.backward()
        grad = vision_layers(model)[0].attention.projection_layer.weight.grad
        results.append((out.loss.detach(), grad.clone()))
    assert results[1][0] == pytest.approx(float(results[0][0]), rel=1e-4)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-3, atol=1e-5)
