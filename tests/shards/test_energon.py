"""Megatron-Energon reads vlmix shards as written: its own index, info and loaders, every turn and image."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from shards.cli import energon_main
from shards.reader import iter_samples
from tests.shards.shapes import COUNTS, REPEAT_TIME, build_shapes

energon = pytest.importorskip("megatron.energon")
from shards.energon_sample import (  # noqa: E402
    ConversationSample,
    ConversationTaskEncoder,
    cook_conversation,
    load_fields,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("energon")
    manifest = build_shapes(root, root / "shards")
    assert energon_main([str(root / "shards"), "--val-shards", "1", "--workers", "1"]) == 0
    return root / "shards", manifest


def _worker_config():
    return energon.WorkerConfig(rank=0, world_size=1, num_workers=0)


def _load(path, split_part, **kwargs):
    dataset = energon.get_val_dataset(path, split_part=split_part, batch_size=1, worker_config=_worker_config(),
                                      task_encoder=ConversationTaskEncoder(), **kwargs)
    return [sample for batch in energon.get_loader(dataset) for sample in batch]


def test_every_sample_turn_and_image_arrives(prepared):
    shards, manifest = prepared
    expected = {}
    for entry in manifest["shards"]:
        for key, members in iter_samples(shards / entry["name"]):
            record = json.loads(members["json"])
            images = [members[image["member"]] for image in record["meta"]["images"]]
            expected[key] = (entry["name"], record, images)
    names = [entry["name"] for entry in manifest["shards"]]
    loaded = {"train": _load(shards, "train"), "val": _load(shards, "val")}
    assert {s.__key__ for s in loaded["val"]} == {k for k, (name, _, _) in expected.items() if name == names[-1]}
    samples = loaded["train"] + loaded["val"]
    assert sorted(s.__key__ for s in samples) == sorted(expected)  # each once, none dropped
    shapes = {"captions": 1, "pairs": 2, "chat": 0}
    for sample in samples:
        assert isinstance(sample, ConversationSample)
        _, record, images = expected[sample.__key__]
        assert sample.conversations == record["conversations"] and sample.source == record["source"]
        assert len(sample.images) == shapes[sample.source] == len(images)
        for tensor, data in zip(sample.images, images, strict=True):
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255
            assert torch.allclose(tensor, torch.from_numpy(pixels).permute(2, 0, 1), atol=1 / 255)
    per_source = {source: sum(s.source == source for s in samples) for source in COUNTS}
    assert per_source == {source: int(COUNTS[source] * REPEAT_TIME[source]) for source in COUNTS}


def test_energon_info_and_a_training_loader_work_on_the_folder_as_written(prepared, tmp_path):
    from click.testing import CliRunner
    from megatron.energon.cli.main import main

    shards, manifest = prepared
    result = CliRunner().invoke(main, ["info", str(shards)])
    assert result.exit_code == 0, result.output
    assert str(manifest["total_samples"]) in result.output
    dataset = energon.get_train_dataset(shards, batch_size=4, shuffle_buffer_size=8, max_samples_per_sequence=4,
                                        worker_config=_worker_config(), task_encoder=ConversationTaskEncoder())
    batch = next(iter(energon.get_loader(dataset)))
    assert len(batch) == 4 and all(isinstance(s, ConversationSample) for s in batch)
    crude = _load(shards, "val", dataset_config="crude.yaml")  # the cooker's way, the same samples
    assert [(s.__key__, s.conversations, len(s.images)) for s in crude] == \
        [(s.__key__, s.conversations, len(s.images)) for s in _load(shards, "val")]

    shutil.copytree(shards, tmp_path / "second", ignore=shutil.ignore_patterns(".nv-meta", "*.idx"))
    blend = tmp_path / "blend.yaml"  # a second mixture, prepared and blended with the first
    assert energon_main([str(shards), str(tmp_path / "second"), "--val-shards", "1", "--workers", "1",
                         "--blend", str(blend), "--weights", "1", "3"]) == 0
    dataset = energon.get_val_dataset(blend, split_part="train", batch_size=1, worker_config=_worker_config(),
                                      task_encoder=ConversationTaskEncoder())
    blended = [s for batch in energon.get_loader(dataset) for s in batch]
    assert len(blended) == 2 * (manifest["total_samples"] - manifest["shards"][-1]["samples"])


def test_a_missing_image_member_is_an_error_naming_it():
    record = {"id": "pairs-0001", "source": "pairs", "task": "multi_image", "language": "zh",
              "conversations": [], "meta": {"images": [{"member": "jpg"}, {"member": "1.png"}]}}
    raw = {"__key__": "pairs-0001", "__restore_key__": (), "json": record, "jpg": torch.zeros(3, 2, 2)}
    with pytest.raises(ValueError, match=r"pairs-0001.*'1\.png' is missing"):
        load_fields(raw)
    with pytest.raises(ValueError, match=r"pairs-0001.*'1\.png' is missing"):
        cook_conversation(raw)


def test_a_mixture_on_s3_is_prepared_in_place_and_loads(prepared, monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    from shards.energon import energon_path

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir("energon-bucket")
        shards, manifest = prepared
        for entry in [*manifest["shards"], {"name": "manifest.json"}]:  # the mixture as the writer leaves it
            fs.put(str(shards / entry["name"]), f"energon-bucket/run/shards/{entry['name']}")
        assert energon_main(["s3://energon-bucket/run/shards/", "--workers", "1"]) == 0
        assert fs.exists("energon-bucket/run/shards/.nv-meta/dataset.yaml")
        path = energon_path("s3://energon-bucket/run/shards")
        samples = _load(path, "train")
        assert sorted(s.__key__ for s in samples) == sorted(s.__key__ for s in _load(shards, "train") + _load(shards, "val"))
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
