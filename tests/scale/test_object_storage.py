"""The demo pipeline with its storage root on S3: a real S3 API (moto's server) on loopback.

Download, OCR, task samples and the mixture all write into the bucket and nothing onto local disk;
``vlmix verify`` and ``webdataset`` (through :func:`shards.reader.shard_urls`) read the shards back
from it; a shard writer killed mid-run resumes to the same bytes, and until its manifest is written
no reader takes the directory as finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.config import load_config

pytestmark = pytest.mark.slow

BUCKET = "vlmix-test"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

CONFIG = """
seed: 3
storage: {{root: "{root}"}}
ray: {{num_cpus: 2}}
demo: {{directory: "{demo}", scale: 0.03}}
tasks:
  captioning: {{share: 0.539}}
  detection: {{share: 0.052}}
  ocr_large: {{share: 0.320}}
  ocr_small: {{share: 0.089}}
download: {{timeout_s: 1, max_body_bytes: 1048576, samples_per_shard: 16, threads_per_worker: 16, retry_rounds: 1}}
ocr: {{model: PP-OCRv6_tiny, batch_size: 4}}
mixture: {{total_samples: 300}}
shards: {{max_samples: 64}}
sources:
  - name: demo_laion_en
    kind: url_list
    task: captioning
    language: en
    locations: ["{demo}/urls/scenes.parquet"]
    columns: {{url: url, caption: caption, punsafe: punsafe, pwatermark: pwatermark, width: WIDTH, height: HEIGHT}}
    filters: {{max_punsafe: 0.5, max_pwatermark: 0.8, min_width: 64, min_caption_chars: 5}}
  - name: demo_objects365
    kind: url_list
    task: detection
    language: en
    locations: ["{demo}/urls/objects.parquet"]
    columns: {{url: url, caption: caption, extra: [objects]}}
  - name: demo_wukong_ocr
    kind: url_list
    task: ocr_large
    language: zh
    locations: ["{demo}/urls/text_zh.parquet"]
    columns: {{url: url, caption: caption, punsafe: punsafe, width: WIDTH, height: HEIGHT}}
    filters: {{max_punsafe: 0.5, min_width: 64}}
    ocr: {{language: zh}}
  - name: demo_laioncoco_ocr
    kind: url_list
    task: ocr_large
    language: en
    locations: ["{demo}/urls/text_en.parquet"]
    columns: {{url: url, caption: caption, punsafe: punsafe, width: WIDTH, height: HEIGHT}}
    filters: {{max_punsafe: 0.5, min_width: 64}}
    ocr: {{language: en}}
  - name: demo_synthdog
    kind: url_list
    task: ocr_small
    language: auto
    locations: ["{demo}/urls/synth_text.parquet"]
    columns: {{url: url, caption: caption, language: LANGUAGE}}
"""


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1, found through AWS_ENDPOINT_URL, with one empty bucket."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint)
    S3FileSystem.clear_instance_cache()
    S3FileSystem().mkdir(BUCKET)
    yield endpoint
    S3FileSystem.clear_instance_cache()  # no later test may reuse a client of the stopped server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def ray_with_s3_env(s3, local_ray):
    """Local Ray whose workers see the S3 endpoint: img2dataset opens its output URIs from them."""
    import ray

    from pipelines.runtime import ensure_ray, shutdown_ray

    @ray.remote
    def endpoint():
        return os.environ.get("AWS_ENDPOINT_URL")

    if not ray.is_initialized() or ray.get(endpoint.remote()) != s3:  # started before the server
        shutdown_ray()
        ensure_ray(None, num_cpus=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from flows.demo import generate

    return generate(tmp_path_factory.mktemp("demo"), seed=7, scale=0.03, bad_url_share=0.1)


@contextlib.contextmanager
def served(demo: Path):
    """A fresh demo server per run: its flaky URLs fail once per server, so each run sees the same."""
    from flows.demo import DemoServer, write_url_lists

    with DemoServer(demo, hang_s=5, oversized_mib=4) as server:
        write_url_lists(demo, server.base_url)
        yield


def run_pipeline(tmp: Path, demo: Path, root: str):
    """Every stage of the demo flow that exists (translation aside), with ``root`` as storage root."""
    from flows.assemble import build_tasks_stage, download_all, mix_stage, ocr_stage

    path = tmp / "config.yaml"
    path.write_text(CONFIG.format(root=root, demo=demo))
    config = load_config(path)
    download = {name: stats.to_json() for name, stats in download_all(config, progress=False).items()}
    return config, {
        "download": download,
        "ocr": ocr_stage(config),
        "tasks": build_tasks_stage(config),
        "mix": mix_stage(config),
    }


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def s3_run(s3, ray_with_s3_env, demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s3-run")
    with served(demo):
        demo_before, cwd_before = _files(demo), set(os.listdir())
        config, summary = run_pipeline(tmp, demo, f"s3://{BUCKET}/run")
    assert _files(demo) == demo_before and _files(tmp) == {
        "config.yaml": (tmp / "config.yaml").stat().st_size
    }
    assert not {"s3:", BUCKET} & (set(os.listdir()) - cwd_before), "an s3:// path was taken as a local one"
    return config, summary


@pytest.fixture(scope="module")
def local_run(ray_with_s3_env, demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local-run")
    with served(demo):
        return run_pipeline(tmp, demo, str(tmp / "root"))


def _s3fs(**options):
    from s3fs import S3FileSystem

    return S3FileSystem(**options)


def test_every_stage_writes_into_the_bucket(s3_run):
    config, summary = s3_run
    keys = _s3fs().find(f"{BUCKET}/run")
    top = {key.split("/")[2] for key in keys}
    assert {"raw", "tasks", "shards"} <= top, top
    for source in (
        "demo_laion_en",
        "demo_objects365",
        "demo_wukong_ocr",
        "demo_laioncoco_ocr",
        "demo_synthdog",
    ):
        assert summary["download"][source]["downloaded"] > 0
        assert any(key.startswith(f"{BUCKET}/run/raw/{source}/") and key.endswith(".tar") for key in keys)
    for dataset in (
        "demo_laion_en",
        "demo_objects365",
        "demo_wukong_ocr",
        "demo_laioncoco_ocr",
        "demo_synthdog",
    ):
        assert any(key.startswith(f"{BUCKET}/run/tasks/{dataset}/") for key in keys), dataset
    assert summary["ocr"]["demo_wukong_ocr"]["kept"] > 0 and summary["ocr"]["demo_laioncoco_ocr"]["kept"] > 0
    shards = f"{BUCKET}/run/shards"
    assert {f"{shards}/manifest.json", f"{shards}/report.png", f"{shards}/report.md"} <= set(keys)
    leftovers = [key for key in keys if ".tmp" in key or "/_tmp/" in key or "/_inflight/" in key]
    assert not leftovers, leftovers
    mix = summary["mix"]
    assert mix["directory"] == f"s3://{shards}" and mix["samples"] == config.mixture.total_samples
    assert len([key for key in keys if key.startswith(f"{shards}/mix-")]) == mix["shards"] == 5


def test_vlmix_verify_reads_the_shards_from_s3(s3_run, s3, monkeypatch):
    from shards import verify

    uri = s3_run[1]["mix"]["directory"]
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "verify", uri], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "OK: 5 shards, 300 samples match the manifest" in done.stdout

    # The endpoint may come from the storage options instead of the environment.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    result = verify(uri, storage_options={"endpoint_url": s3})
    assert result.ok and (result.shards, result.samples) == (5, 300)


def test_verify_catches_a_truncated_shard_on_s3(s3_run):
    fs = _s3fs()
    source, copy = f"{BUCKET}/run/shards", f"{BUCKET}/damaged"
    for key in fs.find(source):
        fs.copy(key, key.replace(source, copy))
    data = fs.cat_file(f"{copy}/mix-000002.tar")
    fs.pipe_file(f"{copy}/mix-000002.tar", data[: len(data) // 2])
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "verify", f"s3://{copy}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "mix-000002.tar: unreadable after" in done.stderr and "bytes, manifest says" in done.stderr


def test_webdataset_reads_every_sample_through_shard_urls(s3_run):
    import webdataset

    from shards import read_manifest
    from shards.reader import ShardReader, shard_urls

    uri = s3_run[1]["mix"]["directory"]
    urls = shard_urls(uri)
    assert len(urls) == 5 and all(url.startswith("pipe:") for url in urls)
    got = {}
    for sample in webdataset.WebDataset(urls, shardshuffle=False):
        record = json.loads(sample["json"])
        image = sample.get("jpg") or sample["png"]
        assert hashlib.sha256(image).hexdigest() == record["meta"]["image_sha256"]  # original bytes, intact
        got[sample["__key__"]] = (hashlib.sha256(image).hexdigest(), record)

    fs, expected = _s3fs(), {}
    for entry in read_manifest(uri)["shards"]:
        with ShardReader(f"{BUCKET}/run/shards/{entry['name']}", fs) as reader:
            for key, members in reader:
                image = members.get("jpg") or members["png"]
                expected[key] = (hashlib.sha256(image).hexdigest(), json.loads(members["json"]))
            assert reader.sha256() == entry["sha256"]
    assert got == expected and len(got) == 300


_WRITER = """
import sys
from shards.mix import MixSettings
from shards import ShardSettings, mix_and_write
mix_and_write(sys.argv[1], sys.argv[2], MixSettings(total_samples=800, seed=9), ShardSettings(max_samples=8, report=False))
"""


def test_killed_writer_on_s3_resumes_to_the_same_bytes(s3_run):
    from shards import ShardSettings, mix_and_write, verify
    from shards.mix import MixSettings
    from shards.reader import shard_urls

    root = f"s3://{BUCKET}/run"
    mix, settings = MixSettings(total_samples=800, seed=9), ShardSettings(max_samples=8, report=False)
    mix_and_write(root, f"s3://{BUCKET}/reference", mix, settings)

    killed = f"{BUCKET}/killed"
    watcher = _s3fs(use_listings_cache=False)
    process = subprocess.Popen([sys.executable, "-c", _WRITER, root, f"s3://{killed}"])
    deadline = time.monotonic() + 120
    while (
        not watcher.exists(f"{killed}/mix-000010.tar")
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the writer finished before it could be killed"

    reference = {key.rsplit("/", 1)[1]: watcher.cat_file(key) for key in watcher.find(f"{BUCKET}/reference")}
    partial = {key.rsplit("/", 1)[1]: watcher.cat_file(key) for key in watcher.find(killed)}
    shards = {name: data for name, data in partial.items() if name.startswith("mix-")}
    assert 10 < len(shards) < 100 and "manifest.json" not in partial
    assert all(reference[name] == data for name, data in shards.items())  # what is there is whole
    with pytest.raises(FileNotFoundError, match="not a finished vlmix shard directory"):
        shard_urls(f"s3://{killed}")  # no manifest yet: no reader takes the shards
    assert "not a finished vlmix shard directory" in verify(f"s3://{killed}").problems[0]

    mix_and_write(root, f"s3://{killed}", mix, settings)
    after = {key.rsplit("/", 1)[1]: watcher.cat_file(key) for key in watcher.find(killed)}
    assert after == reference  # same shards, same manifest, no temporary objects left


def _counts(download: dict) -> dict:
    """Download stats without the wall-clock time and node ids, which differ from run to run."""
    return {
        source: {k: v for k, v in stats.items() if k not in ("seconds", "nodes")}
        for source, stats in download.items()
    }


def test_counts_match_a_local_disk_run(s3_run, local_run):
    """Every count is the same. Not the bytes: img2dataset writes a raw shard's samples in the order
    its threads finish, so two downloads of one URL list (local or not) order their rows differently
    and the seeded draw picks other rows of a dataset (the same number of them)."""
    (_, on_s3), (_, local) = s3_run, local_run
    assert _counts(on_s3["download"]) == _counts(local["download"])
    assert on_s3["ocr"] == local["ocr"] and on_s3["tasks"] == local["tasks"]
    for key in ("samples", "shards", "tasks"):
        assert on_s3["mix"][key] == local["mix"][key], key
    s3_manifest = json.loads(_s3fs().cat_file(f"{BUCKET}/run/shards/manifest.json"))
    local_manifest = json.loads(Path(local["mix"]["manifest"]).read_text())
    for key in ("total_samples", "tasks", "sources", "drops"):
        assert s3_manifest[key] == local_manifest[key], key
    assert [s["samples"] for s in s3_manifest["shards"]] == [s["samples"] for s in local_manifest["shards"]]


def test_shard_urls_keep_credentials_off_the_command_line(s3_run, s3):
    from shards.reader import shard_urls

    uri = s3_run[1]["mix"]["directory"]
    with pytest.raises(ValueError, match="credentials would be visible"):
        shard_urls(uri, storage_options={"endpoint_url": s3, "secret": "testing"})
    urls = shard_urls(uri, storage_options={"endpoint_url": s3})
    assert all(f'--options \'{{"endpoint_url": "{s3}"}}\'' in url for url in urls)


def test_shard_urls_of_a_local_directory_are_its_paths(local_run):
    import webdataset

    from shards.reader import shard_urls

    directory = Path(local_run[1]["mix"]["directory"])
    assert shard_urls(directory) == [str(path) for path in sorted(directory.glob("mix-*.tar"))]
    assert sum(1 for _ in webdataset.WebDataset(shard_urls(directory), shardshuffle=False)) == 300


def test_a_failed_shard_leaves_no_object_and_no_open_upload(s3):
    import boto3

    from shards.writer import ShardWriter

    for mib in (3, 60):  # under s3fs's 50 MiB part: nothing sent yet; over it: a multipart upload began
        with (
            pytest.raises(RuntimeError, match="input went bad"),
            ShardWriter(f"s3://{BUCKET}/failed-{mib}", "mix") as writer,
        ):
            for i in range(mib):
                writer.write(f"k{i:04d}", [("bin", os.urandom(1 << 20))])
            raise RuntimeError("input went bad")
        assert _s3fs(use_listings_cache=False).find(f"{BUCKET}/failed-{mib}") == []
        assert boto3.client("s3").list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_the_trainer_streams_the_shards_from_s3(s3_run, tmp_path):
    """`vlmix train --shards s3://...`: the tiny model trains from the bucket's shards."""
    from trainer.cli import main as train_main

    uri = s3_run[1]["mix"]["directory"]
    out = tmp_path / "train"
    code = train_main(["--recipe", "stage2", "--shards", uri, "--model", "tiny", "--steps", "4", "--lr", "0.003",
                       "--global-batch", "4", "--max-tiles", "1", "--context", "768", "--out", str(out)])
    assert code == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [s["loss"] for s in steps if "loss" in s]
    assert len(losses) == 4 and all(loss == loss for loss in losses)  # four real steps, no NaN


def test_conversation_sources_are_read_from_the_bucket(s3, ray_with_s3_env):
    """InternVL JSONL + images and WebDataset tars in a bucket: built by Ray workers, images read back
    from the bucket byte for byte."""
    import io
    import json
    import tarfile

    import pyarrow.parquet as pq
    from PIL import Image

    from flows.config import Source
    from pipelines.layout.raw import read_image
    from pipelines.layout.task_table import ImageRef
    from pipelines.storage import Storage
    from tasks import TaskSettings, build_task_samples

    fs = _s3fs()
    jpeg = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 90, 200)).save(jpeg, format="JPEG")
    inputs = f"{BUCKET}/conv-inputs"
    fs.pipe(f"{inputs}/images/a.jpg", jpeg.getvalue())
    turns = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Blue."}]
    fs.pipe(f"{inputs}/chat.jsonl", (json.dumps({"id": "c1", "image": "a.jpg", "conversations": turns}) + "\n").encode())
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        for name, data in (("k1.jpg", jpeg.getvalue()), ("k1.json", json.dumps({"conversations": turns}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    fs.pipe(f"{inputs}/pages-000000.tar", tar.getvalue())

    root = f"s3://{BUCKET}/conv-run"
    storage = Storage(root)
    sources = [
        Source(name="chat", kind="internvl_jsonl", task="ocr_small", language="en",
               locations=[f"s3://{inputs}/chat.jsonl"], image_root=f"s3://{inputs}/images"),
        Source(name="pages", kind="webdataset", task="ocr_large", language="en",
               locations=[f"s3://{inputs}/pages-*.tar"]),
    ]
    for source in sources:
        result = build_task_samples(source, storage, TaskSettings())
        assert (result.samples, result.drops) == (1, {}), source.name
        (path,) = fs.glob(f"{BUCKET}/conv-run/tasks/{source.name}/*.parquet")
        (row,) = pq.read_table(path, filesystem=fs).to_pylist()
        (image,) = row["images"]
        assert read_image(storage, ImageRef(image["uri"], image["offset"], image["size"])) == jpeg.getvalue()
        assert row["conversations"] == turns
