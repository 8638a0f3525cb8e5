"""Checkpoints on object storage: a real S3 API (moto's server) on loopback, found through AWS_ENDPOINT_URL."""

import logging
import os

import pytest
import torch

from trainer import checkpoint
from trainer.model import build_model
from trainer.recipes import stage2
from trainer.tokenization import load_tokenizer
from trainer.train import train

pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "vlmix-train-test"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {name: os.environ.get(name) for name in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=f"http://{host}:{port}")
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(BUCKET)
    yield s3fs.S3FileSystem()
    s3fs.S3FileSystem.clear_instance_cache()  # no later test may reuse a client of the stopped server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_a_checkpoint_on_s3_round_trips(s3, shard_dir, tokenizer_dir, tmp_path):
    location = f"s3://{BUCKET}/runs/tiny/checkpoints"
    config = stage2(
        str(shard_dir), str(tokenizer_dir), preset="tiny", steps=3, global_batch_samples=8, checkpoint_every=2,
        out_dir=str(tmp_path / "first"), checkpoint_dir=location, progress=False,
        data={"max_tiles": 2, "tokens_per_batch": 1024, "shuffle_buffer": 8},
        tokenize={"context_length": 512, "system_message": ""}, optim={"lr": 3e-3},
    )  # fmt: skip
    straight = train(config)
    assert checkpoint.latest(location) == f"{location}/step_00000003"
    assert not (tmp_path / "first" / "checkpoints").exists()  # nothing on local disk
    assert s3.exists(f"{BUCKET}/runs/tiny/checkpoints/step_00000002/.metadata")
    assert checkpoint.read_config(f"{location}/step_00000002")["checkpoint_dir"] == location
    # The weights read back from the bucket are the ones trained.
    tokenizer = load_tokenizer(tokenizer_dir)
    weights = [
        build_model("tiny", len(tokenizer), tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")) for _ in "ab"
    ]
    checkpoint.load_model_weights(f"{location}/step_00000002", weights[0])
    checkpoint.load_model_weights(f"{location}/step_00000003", weights[1])
    assert not torch.equal(weights[0].lm_head.weight, weights[1].lm_head.weight)
    # Only step 2 left: a new run with the same location resumes there and retakes step 3.
    s3.rm(f"{BUCKET}/runs/tiny/checkpoints/step_00000003", recursive=True)
    resumed = train(config.model_copy(update={"out_dir": str(tmp_path / "second")}))
    assert [m["step"] for m in resumed] == [3]
    assert resumed[0]["loss"] == pytest.approx(straight[2]["loss"], rel=1e-6)
    restored = build_model("tiny", len(tokenizer), tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    checkpoint.load_model_weights(f"{location}/step_00000003", restored)
    torch.testing.assert_close(restored.lm_head.weight, weights[1].lm_head.weight)
