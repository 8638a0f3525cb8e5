"""Training runs of the tiny model on small shards: learning, stage-1 freezing, exact resume, the CLI."""

import json
import shutil

import pytest
import torch

from trainer import checkpoint
from trainer.cli import build_parser, main
from trainer.model import build_model, language_layers
from trainer.recipes import stage1, stage2
from trainer.tokenization import load_tokenizer
from trainer.train import train


def small(recipe, shard_dir, tokenizer_dir, out, **overrides):
    """A recipe shrunk to CPU size: 8 samples a step, up to 2 tiles, 512-token context."""
    settings = dict(
        out_dir=str(out),
        global_batch_samples=8,
        checkpoint_every=0,
        progress=False,
        data={"max_tiles": 2, "tokens_per_batch": 2048, "shuffle_buffer": 16},
        tokenize={"context_length": 512, "system_message": ""},
    )
    for key, value in overrides.items():
        settings[key] = {**settings[key], **value} if isinstance(value, dict) and key in settings else value
    return recipe(str(shard_dir), str(tokenizer_dir), preset="tiny", **settings)


def test_loss_falls_by_30_percent(shard_dir, tokenizer_dir, tmp_path):
    config = small(
        stage2, shard_dir, tokenizer_dir, tmp_path, steps=20, optim={"lr": 5e-3, "warmup_steps": 2}
    )
    losses = [m["loss"] for m in train(config)]
    assert len(losses) == 20
    assert sum(losses[-3:]) / 3 <= 0.7 * losses[0], losses
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    logged = json.loads(lines[-1])
    assert logged["step"] == 20 and logged["tokens_per_s"] > 0 and logged["tiles_per_s"] > 0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def _initial_model(config):
    tokenizer = load_tokenizer(config.tokenize.tokenizer)
    torch.manual_seed(config.seed)
    return build_model("tiny", len(tokenizer), tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), config.model)


def test_stage1_leaves_the_llm_untouched(shard_dir, tokenizer_dir, tmp_path):
    config = small(stage1, shard_dir, tokenizer_dir, tmp_path, steps=3, optim={"lr": 1e-3, "warmup_steps": 0})
    train(config)
    before = _initial_model(config)
    after = _initial_model(config)
    checkpoint.load_model_weights(checkpoint.latest(tmp_path / "checkpoints"), after)
    llm_before = dict(before.model.language_model.named_parameters())
    for name, weight in after.model.language_model.named_parameters():
        assert torch.equal(weight, llm_before[name]), name
    assert torch.equal(after.lm_head.weight, before.lm_head.weight)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            after.model.vision_tower.parameters(), before.model.vision_tower.parameters(), strict=True
        )
    ]
    assert sum(changed) > len(changed) // 2
    assert not torch.equal(
        after.model.multi_modal_projector.linear_1.weight, before.model.multi_modal_projector.linear_1.weight
    )
    assert len(language_layers(after)) == 2


def test_resume_reproduces_the_next_steps(shard_dir, tokenizer_dir, tmp_path):
    first = tmp_path / "first"
    config = small(stage2, shard_dir, tokenizer_dir, first, steps=6, checkpoint_every=3, optim={"lr": 3e-3})
    straight = [m["loss"] for m in train(config)]
    # A second run that finds only the step-3 checkpoint picks up from there.
    second = tmp_path / "second"
    shutil.copytree(first / "checkpoints" / "step_00000003", second / "checkpoints" / "step_00000003")
    resumed = train(config.model_copy(update={"out_dir": str(second)}))
    assert [m["step"] for m in resumed] == [4, 5, 6]
    assert [m["loss"] for m in resumed] == pytest.approx(straight[3:], rel=1e-6)


def test_cli_trains_the_tiny_model_offline(shard_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "stage2", "--shards", str(shard_dir), "--model", "tiny", "--out", str(out)]
    argv += ["--steps", "2", "--global-batch", "4", "--max-tiles", "2", "--context", "512", "--lr", "1e-3"]
    argv += ["--resize", "torch", "--attn", "sdpa", "--streams", "2", "--no-packing"]
    assert main(argv + ["--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["recipe"] == "stage2" and printed["optim"]["lr"] == 1e-3 and printed["steps"] == 2
    assert printed["data"]["resize"] == "torch" and printed["model"]["attn_implementation"] == "sdpa"
    assert printed["data"]["streams"] == 2 and printed["data"]["packing"] is False
    assert main(argv) == 0
    assert (out / "tokenizer" / "tokenizer.json").exists()  # trained from the shards' text
    assert checkpoint.latest(out / "checkpoints").endswith("/step_00000002")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_cli_surface_is_frozen():
    """Users' scripts call these options; removing or renaming one breaks them."""
    options = sorted(o for action in build_parser()._actions for o in action.option_strings)
    assert options == sorted(
        "-h --help --recipe --shards --model --tokenizer --out --init-from --steps --lr --global-batch --tokens-per-batch "
        "--max-tiles --resize --context --num-workers --checkpoint-every --checkpoint-dir --no-packing --hsdp "
        "--shard-group --streams --attn --precision --compile --no-resume --launcher --nproc "
        "--workers --gpu --ray-address --print-config".split()
    )


def test_cli_names_match_the_registries():
    from trainer.cli import PRESET_NAMES, RECIPE_NAMES
    from trainer.model import PRESETS
    from trainer.recipes import RECIPES

    assert set(PRESET_NAMES) == set(PRESETS) and set(RECIPE_NAMES) == set(RECIPES)


def test_the_26b_model_needs_a_tokenizer(shard_dir, tmp_path):
    with pytest.raises(SystemExit, match="--tokenizer is required"):
        main(["train", "--recipe", "stage1", "--shards", str(shard_dir), "--out", str(tmp_path)])


@pytest.mark.slow
def test_ray_train_runs_two_sharded_workers(shard_dir, tokenizer_dir, tmp_path, local_ray):
    from trainer.launch import launch_ray

    config = small(stage2, shard_dir, tokenizer_dir, tmp_path, steps=2, optim={"lr": 1e-3})
    launch_ray(config, num_workers=2)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2]
    assert logged[0]["samples"] >= 8  # both ranks' micro-batches count toward the global batch
    saved = checkpoint.read_trainer_state(checkpoint.latest(tmp_path / "checkpoints"))
    assert saved["world_size"] == 2 and saved["data"]["streams"] == 2  # one DCP checkpoint, both ranks
