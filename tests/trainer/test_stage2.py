"""Stage 2 from stage 1: the public recipe's settings, all parameters trained, weights and tokenizer
taken from our stage-1 run or from a released-layout InternVL checkpoint."""

import json

import pytest
import torch
from trainer_shapes import write_shape_shard

from trainer import checkpoint, init
from trainer.cli import main
from trainer.convert import save_internvl_chat
from trainer.model import build_model
from trainer.recipes import stage1
from trainer.tokenization import load_tokenizer
from trainer.train import train


def _weights(run_dir, tokenizer_dir) -> dict[str, torch.Tensor]:
    tokenizer = load_tokenizer(tokenizer_dir)
    model = build_model("tiny", len(tokenizer), tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    if run_dir is not None:
        checkpoint.load_model_weights(checkpoint.latest(run_dir / "checkpoints"), model)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_stage2_trains_everything_from_a_stage1_run(tmp_path, tokenizer_dir, capsys):
    shards = write_shape_shard(tmp_path / "shards")
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    train(stage1(str(shards), str(tokenizer_dir), preset="tiny", out_dir=str(s1), steps=2, global_batch_samples=4,
                 checkpoint_every=0, progress=False, optim={"lr": 1e-2, "warmup_steps": 0},
                 data={"max_tiles": 4}, tokenize={"context_length": 1024}))
    argv = ["train", "--recipe", "stage2", "--out", str(s2), "--init-from", str(s1), "--shards", str(shards),
            "--model", "tiny", "--context", "1024", "--max-tiles", "4", "--checkpoint-every", "0"]
    assert main([*argv, "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    # The public stage-2 recipe: lr 2e-5, 3% warm-up, drop-path 0.4, batch 1024, nothing frozen.
    assert printed["optim"]["lr"] == 2e-5 and printed["optim"]["warmup_ratio"] == 0.03
    assert printed["model"]["drop_path_rate"] == 0.4 and printed["global_batch_samples"] == 1024
    assert printed["freeze_llm"] is False and printed["init_from"] == str(s1)
    assert printed["tokenize"]["tokenizer"] == str(tokenizer_dir)  # stage 1's, not a new one
    assert main([*argv, "--steps", "1", "--lr", "1e-4", "--global-batch", "4"]) == 0
    assert not (s2 / "tokenizer").exists()
    torch.manual_seed(0)
    fresh = _weights(None, tokenizer_dir)
    after1, after2 = _weights(s1, tokenizer_dir), _weights(s2, tokenizer_dir)
    # Stage 1 moved InternViT well away from its initialisation (two steps of lr 1e-2); one AdamW
    # step of lr 1e-4 moves a weight by about 1e-4: stage 2 started from stage 1's weights.
    vision = [n for n in after1 if n.startswith("model.vision_tower") and n.endswith("weight")]
    assert sum((after1[n] - fresh[n]).abs().max() > 5e-3 for n in vision) > len(vision) // 2
    for name, weight in after2.items():
        assert (weight - after1[name]).abs().max() <= 3e-4, name
    llm = [n for n in after2 if "language_model" in n]
    assert all(torch.equal(after1[n], fresh[n]) for n in llm)  # frozen in stage 1 ...
    assert sum(not torch.equal(after2[n], after1[n]) for n in llm) > len(llm) // 2  # ... learning in stage 2


def test_init_from_a_released_layout_checkpoint(tmp_path):
    torch.manual_seed(1)
    released = build_model("tiny", 300, 299)
    folder = tmp_path / "InternVL-Chat-V1-5-tiny"
    save_internvl_chat(released, folder)
    source = init.resolve(str(folder))
    assert source.kind == "internvl"
    torch.manual_seed(2)
    model = build_model("tiny", 300, 299)
    init.load_weights(model, source, "tiny")
    for name, weight in released.state_dict().items():
        assert torch.equal(model.state_dict()[name], weight), name
    with pytest.raises(FileNotFoundError, match="neither a checkpoint of this trainer"):
        init.resolve(str(tmp_path / "nothing"))
