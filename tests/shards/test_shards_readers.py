"""Our shards read intact by the readers users have: webdataset, Hugging Face datasets, ray.data.

Every sample shape (one image, several over several turns, text only) through the Hub and Ray
readers (:mod:`shards.hf`, :mod:`shards.ray_data`): every image and turn, in order.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from shards import ShardSettings, mix_and_write
from shards.hf import load_shards
from shards.mix import MixSettings
from shards.ray_data import read_shards
from shards.reader import iter_samples
from shards.rows import sample_row
from tests.shards.shapes import COUNTS, _samples, build_shapes


@pytest.fixture(scope="module")
def shard_dir(task_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("readers")
    mix_and_write(
        str(task_root),
        out,
        MixSettings(total_samples=700, seed=4),
        ShardSettings(max_samples=150, report=False),
    )
    return out


@pytest.fixture(scope="module")
def expected(shard_dir):
    """key -> (image extension, image sha256, parsed JSON), from our own reader."""
    samples = {}
    for tar in sorted(shard_dir.glob("*.tar")):
        for key, members in iter_samples(tar):
            extension = "png" if "png" in members else "jpg"
            samples[key] = (
                extension,
                hashlib.sha256(members[extension]).hexdigest(),
                json.loads(members["json"]),
            )
    assert len(samples) == 700 and {e for e, _, _ in samples.values()} == {"jpg", "png"}
    return samples


def _tars(shard_dir):
    return [str(p) for p in sorted(shard_dir.glob("*.tar"))]


def test_webdataset_reads_every_sample(shard_dir, expected):
    import webdataset

    got = {}
    for sample in webdataset.WebDataset(_tars(shard_dir), shardshuffle=False):
        extension = "png" if "png" in sample else "jpg"
        got[sample["__key__"]] = (
            extension,
            hashlib.sha256(sample[extension]).hexdigest(),
            json.loads(sample["json"]),
        )
    assert got == expected


def test_huggingface_datasets_reads_every_sample(shard_dir, expected, tmp_path):
    import datasets

    dataset = load_shards(shard_dir, cache_dir=str(tmp_path))
    dataset = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
    got = {}
    for row in dataset:
        (image,) = row["images"]
        got[row["__key__"]] = (
            image["path"].rsplit(".", 1)[-1],
            hashlib.sha256(image["bytes"]).hexdigest(),
            row["json"],
        )
    assert got == expected


# --- Every sample shape: one image, two images over two turns, text only -------------------------


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    manifest = build_shapes(root, root / "shards", max_samples=8)
    assert len(manifest["shards"]) > 1
    return root / "shards"


@pytest.fixture(scope="module")
def shape_inputs(tmp_path_factory):
    """Source sample id -> (every turn, the sha256 of every image in order), from the task samples written."""
    samples = _samples(tmp_path_factory.mktemp("shape-inputs"))
    inputs = {}
    for dataset, rows in samples.items():
        for sample in rows:
            images = []
            for picture in sample.images:
                with open(picture.ref.uri, "rb") as f:
                    images.append(hashlib.sha256(f.read()).hexdigest())
            inputs[f"{dataset}-{sample.key}"] = (sample.conversations, images)
    assert sum(len(images) == 0 for _, images in inputs.values()) == COUNTS["chat"]
    return inputs


def _check_shapes(rows, manifest_total, inputs):
    """Each row: every turn and every image of its source sample, in order; every source sample there."""
    seen = []
    for key, conversations, images in rows:
        source_id = re.sub(r"-r[0-9]+$", "", key)
        want_turns, want_images = inputs[source_id]
        assert conversations == want_turns, key
        assert [hashlib.sha256(data).hexdigest() for data in images] == want_images, key
        seen.append(source_id)
    assert len(seen) == manifest_total and set(seen) == set(inputs)
    assert {len(inputs[s][1]) for s in seen} == {0, 1, 2}


def _total(shards):
    return sum(entry["samples"] for entry in json.loads((shards / "manifest.json").read_text())["shards"])


def test_huggingface_reads_every_image_and_turn_of_every_shape(shapes_dir, shape_inputs, tmp_path):
    import datasets

    dataset = load_shards(shapes_dir, cache_dir=str(tmp_path))
    decoded = {row["__key__"]: row for row in dataset}  # the default: PIL images
    dataset = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
    _check_shapes(
        [
            (row["__key__"], row["json"]["conversations"], [image["bytes"] for image in row["images"]])
            for row in dataset
        ],
        _total(shapes_dir),
        shape_inputs,
    )
    for key, row in decoded.items():
        sizes = [(entry["width"], entry["height"]) for entry in row["json"]["meta"]["images"]]
        assert [image.size for image in row["images"]] == sizes, key

    streamed = load_shards(shapes_dir, streaming=True)  # reads the tars as it goes, same rows
    assert [(row["__key__"], row["json"], len(row["images"])) for row in streamed] == [
        (row["__key__"], row["json"], len(row["images"])) for row in dataset
    ]


def test_ray_data_reads_every_image_and_turn_of_every_shape(shapes_dir, shape_inputs, local_ray, tmp_path):
    import pyarrow.parquet as pq

    dataset = read_shards(shapes_dir).materialize()  # read once, for both checks
    rows = dataset.take_all()
    _check_shapes(
        [(row["__key__"], row["json"]["conversations"], row["images"]) for row in rows],
        _total(shapes_dir),
        shape_inputs,
    )
    # One Arrow schema for all shapes: the rows write to and read back from Parquet as they are.
    dataset.write_parquet(str(tmp_path / "parquet"))
    table = pq.read_table(tmp_path / "parquet")
    assert str(table.schema.field("images").type) == "list<element: binary>"
    assert sorted(table.column("__key__").to_pylist()) == sorted(row["__key__"] for row in rows)


def test_a_sample_whose_image_is_missing_or_unlisted_fails_naming_it():
    record = {"meta": {"images": [{"member": "jpg"}, {"member": "1.png"}]}}
    sample = {
        "__key__": "pairs-0001",
        "__url__": "mix-000003.tar",
        "json": json.dumps(record).encode(),
        "jpg": b"x",
    }
    with pytest.raises(ValueError, match=r"mix-000003.tar: sample pairs-0001: image member pairs-0001.1.png"):
        sample_row(sample)
    with pytest.raises(ValueError, match=r"member pairs-0001.2.jpg is not listed"):
        sample_row({**sample, "1.png": b"y", "2.jpg": b"z"})
    with pytest.raises(ValueError, match=r"sample pairs-0001: no json member"):
        sample_row({"__key__": "pairs-0001", "__url__": "mix-000003.tar", "jpg": b"x"})


def test_both_read_a_mixture_on_s3_as_they_read_it_locally(shapes_dir, local_ray, tmp_path):
    import datasets

    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # Named in the options, not the environment: Ray's read tasks run in workers started before this test.
        options = {"endpoint_url": f"http://{host}:{port}", "key": "test", "secret": "test"}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("readers-bucket")
        for path in shapes_dir.iterdir():
            fs.put(str(path), f"readers-bucket/run/shards/{path.name}")
        uri = "s3://readers-bucket/run/shards"

        def hub_rows(directory, **kwargs):
            dataset = load_shards(directory, cache_dir=str(tmp_path / "cache"), **kwargs)
            dataset = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
            return [
                (row["__url__"], row["__key__"], row["json"], [i["bytes"] for i in row["images"]])
                for row in dataset
            ]

        local = hub_rows(shapes_dir)  # each reader is checked against the inputs above, locally
        hub = hub_rows(uri, storage_options=options)
        assert [row[1:] for row in hub] == [row[1:] for row in local]
        assert [row[0] for row in hub] == [f"{uri}/{url.rsplit('/', 1)[1]}" for url, *_ in local]
        ray_rows = read_shards(uri, options).take_all()
        assert sorted((row["__key__"], row["json"], row["images"]) for row in ray_rows) == sorted(
            row[1:] for row in local
        )
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
