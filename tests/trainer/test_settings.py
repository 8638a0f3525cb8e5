"""The flow's train stage calls the trainer with its settings (no command line in between)."""

from pathlib import Path

from flows.assemble import train_stage
from flows.config import load_config

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def test_the_flow_train_stage_runs_the_trainer_from_its_settings(shard_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    config = load_config(DEMO, overrides=[
        f"storage.root={tmp_path / 'root'}", f"train.shards={shard_dir}", f"train.tokenizer={tokenizer_dir}",
        f"train.out={out}", "train.steps=2", "train.global_batch=4", "train.context=512", "train.checkpoint_every=0",
    ])
    result = train_stage(config)
    assert result["out"] == str(out) and result["steps"] == 2
    assert result["first_loss"] > 0 and result["last_loss"] > 0
    assert (out / "metrics.jsonl").read_text().count("\n") == 2
