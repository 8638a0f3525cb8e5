"""The flow's `train:` section is the trainer's own settings: it and `vlmix train` resolve alike."""

import json
from pathlib import Path

import pytest

from flows.cli import main as vlmix_main
from flows.config import ConfigError, TrainStage, load_config
from trainer.cli import settings_from_argv, train_config
from trainer.settings import TrainSettings

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def test_the_train_section_and_the_flags_resolve_to_the_same_settings_and_config(tmp_path):
    section = {"recipe": "stage1", "model": "tiny", "tokenizer": str(tmp_path / "tok"), "out": str(tmp_path / "run"),
               "steps": 7, "lr": 0.003, "global_batch": 8, "max_tiles": 2, "context": 1024, "resize": "torch",
               "packing": False, "resume": False, "attn": "sdpa", "streams": 2, "launcher": "ray", "workers": 3}
    stage = TrainStage(**section)
    from_flow = TrainSettings(**{**stage.model_dump(), "shards": str(tmp_path / "shards")})
    from_argv, print_config = settings_from_argv(
        ["--recipe", "stage1", "--shards", str(tmp_path / "shards"), "--model", "tiny", "--tokenizer",
         str(tmp_path / "tok"), "--out", str(tmp_path / "run"), "--steps", "7", "--lr", "0.003", "--global-batch",
         "8", "--max-tiles", "2", "--context", "1024", "--resize", "torch", "--no-packing", "--no-resume",
         "--attn", "sdpa", "--streams", "2", "--launcher", "ray", "--workers", "3"]
    )
    assert not print_config
    assert from_flow.model_dump() == from_argv.model_dump()
    pytest.importorskip("torch")
    config = train_config(from_flow)
    assert config.model_dump() == train_config(from_argv).model_dump()
    assert config.data.max_tiles == 2 and config.data.packing is False and config.resume is False
    assert config.optim.lr == 0.003 and config.tokenize.context_length == 1024 and config.steps == 7


def test_the_flow_keeps_its_own_defaults():
    stage = TrainStage(out="runs/x")
    assert (stage.recipe, stage.model, stage.steps, stage.launcher, stage.shards) == ("stage2", "tiny", 20, "local", None)
    with pytest.raises(ValueError, match="out"):
        TrainStage()


def test_the_demo_config_train_section_is_valid():
    train = load_config(DEMO).train
    assert isinstance(train, TrainSettings)
    assert (train.steps, train.max_tiles, train.context, train.global_batch) == (30, 2, 1024, 8)


def test_a_bad_train_value_fails_at_validation_naming_the_field(capsys):
    with pytest.raises(ConfigError, match=r"train\.max_tiles: got 99"):
        load_config(DEMO, overrides=["train.max_tiles=99"])
    with pytest.raises(ConfigError, match=r"train\.model: got 'huge'"):
        load_config(DEMO, overrides=["train.model=huge"])
    assert vlmix_main(["validate", str(DEMO), "--set", "train.launcher=slurm"]) == 2
    printed = capsys.readouterr()
    assert "train.launcher" in printed.out + printed.err


def test_a_bad_flag_value_fails_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        settings_from_argv(["--recipe", "stage2", "--shards", "s", "--max-tiles", "99"])
    assert exit_.value.code == 2 and "--max-tiles" in capsys.readouterr().err
    assert json.loads(TrainSettings(recipe="stage2", shards="s").model_dump_json())["max_tiles"] is None
