"""The download stage over loopback: exact counts per failure reason, guards, retry pass, resume."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from download import sample_id
from flows.assemble import download_all
from flows.config import load_config
from flows.demo import DemoServer, write_url_lists

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
seed: 0
storage: {{root: {root}}}
ray: {{num_cpus: 2}}
download:
  timeout_s: 3  # a loaded CI machine can stall a loopback reply past 1 s; the hang URLs wait 20
  max_body_bytes: 1048576
  samples_per_shard: {per_shard}
  threads_per_worker: 16
  retry_rounds: 1
tasks: {{captioning: {{share: 0.9}}, detection: {{share: 0.1}}}}
sources:
  - name: scenes
    kind: url_list
    task: captioning
    language: en
    locations: ["{demo}/urls/scenes.parquet"]
    columns: {{url: url, caption: caption, punsafe: punsafe, pwatermark: pwatermark, width: WIDTH, height: HEIGHT}}
    filters: {{max_punsafe: 0.5, max_pwatermark: 0.8, min_width: 64, min_caption_chars: 5}}
  - name: objects
    kind: url_list
    task: detection
    language: en
    locations: ["{demo}/urls/objects.parquet"]
    columns: {{url: url, caption: caption, extra: [objects]}}
"""


def write_config(tmp_path: Path, demo: Path, root: Path, per_shard: int = 16) -> Path:
    path = tmp_path / f"config-{root.name}.yaml"
    path.write_text(CONFIG.format(root=root, demo=demo, per_shard=per_shard))
    return path


def expected_outcome(urls: pd.DataFrame, filters: dict) -> dict:
    """An independent oracle: what the stage must report for this URL list and these filters."""
    reasons = []
    for row in urls.itertuples():
        if filters.get("max_punsafe") is not None and row.punsafe > filters["max_punsafe"]:
            reasons.append("filtered:unsafe")
        elif filters.get("max_pwatermark") is not None and row.pwatermark > filters["max_pwatermark"]:
            reasons.append("filtered:watermarked")
        elif filters.get("min_width") is not None and row.WIDTH < filters["min_width"]:
            reasons.append("filtered:too_narrow")
        elif filters.get("min_caption_chars") is not None and len(row.caption.strip()) < filters["min_caption_chars"]:
            reasons.append("filtered:caption_too_short")
        else:
            reasons.append(row.expect)
    counts = Counter(reasons)
    return {
        "urls": len(urls),
        "filtered": {k.split(":")[1]: v for k, v in counts.items() if k.startswith("filtered:")},
        "downloaded": counts.pop("ok", 0),
        "failed": {k: v for k, v in counts.items() if not k.startswith("filtered:")},
        "recovered_by_retry": sum(1 for r, u in zip(reasons, urls.url, strict=True) if r == "ok" and "/bad/flaky/" in u),
    }


def shard_members(raw: Path) -> list[tuple[str, dict, bytes]]:
    """(id, json, image bytes) of every sample in the complete shards of a raw folder."""
    samples = []
    for stats in sorted(raw.glob("[0-9]*_stats.json")):
        with tarfile.open(raw / stats.name.replace("_stats.json", ".tar")) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, body in members.items():
            if name.endswith(".json"):
                meta = json.loads(body)
                samples.append((sample_id(meta), meta, members[name[:-5] + ".jpg"]))
    return samples


@pytest.fixture(scope="module")
def served(demo_directory):
    with DemoServer(demo_directory, hang_s=20, oversized_mib=4) as server:
        write_url_lists(demo_directory, server.base_url)
        yield server


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, demo_directory, served, local_ray):
    tmp = tmp_path_factory.mktemp("clean")
    config = load_config(write_config(tmp, demo_directory, tmp / "root"))
    return config, download_all(config, progress=False)


def test_counts_per_reason_are_exact(clean_run, demo_directory):
    config, stats = clean_run
    for name in ("scenes", "objects"):
        urls = pd.read_parquet(demo_directory / "urls" / f"{name}.parquet")
        filters = config.source(name).filters.model_dump()
        got = stats[name].to_json()
        want = expected_outcome(urls, filters)
        assert {k: got[k] for k in want} == want, name
    # The demo exercises every guard: each reason must have been seen at least once.
    seen = Counter()
    for s in stats.values():
        seen.update(s.failed)
    assert {"http_404", "timeout", "not_an_image", "truncated_image", "body_too_large", "decompression_bomb"} <= set(seen)
    assert sum(s.recovered_by_retry for s in stats.values()) > 0


def test_shards_hold_each_downloaded_sample_once_with_original_bytes(clean_run, demo_directory):
    config, stats = clean_run
    for name in ("scenes", "objects"):
        samples = shard_members(Path(config.storage.root) / "raw" / name)
        ids = [sid for sid, _, _ in samples]
        assert len(ids) == len(set(ids)) == stats[name].downloaded
        for _, meta, image in samples:
            assert hashlib.sha256(image).hexdigest() == meta["sha256"]
            served_path = demo_directory / meta["url"].split("/", 3)[3].removeprefix("bad/flaky/")
            assert image == served_path.read_bytes()  # small JPEGs are kept as served, not re-encoded
            Image.open(io.BytesIO(image)).load()
            if name == "objects":
                assert json.loads(meta["objects"])  # the URL list's extra column rides along


def test_rerun_of_a_finished_source_does_nothing(clean_run):
    config, stats = clean_run
    raw = Path(config.storage.root) / "raw" / "scenes"
    before = {p: p.stat().st_mtime_ns for p in raw.glob("*.tar")}
    again = download_all(config, names=["scenes"], progress=False)
    assert again["scenes"].to_json() == stats["scenes"].to_json()
    assert {p: p.stat().st_mtime_ns for p in raw.glob("*.tar")} == before


def test_killed_run_resumes_to_the_same_samples(tmp_path, demo_directory, served, clean_run, local_ray):
    _, clean_stats = clean_run
    root = tmp_path / "killed"
    config_path = write_config(tmp_path, demo_directory, root, per_shard=16)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "download", "--config", str(config_path), "--source", "scenes",
         "--no-progress"],
        cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    raw = root / "raw" / "scenes"
    deadline = time.monotonic() + 120
    while not list(raw.glob("[0-9]*_stats.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed: make the test slower"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (raw / "_vlmix_download.json").exists()
    completed_before = len(list(raw.glob("[0-9]*_stats.json")))
    assert completed_before < 9  # the kill landed mid-run (the source has 9 shards)

    resumed = download_all(load_config(config_path), names=["scenes"], progress=False)["scenes"]
    clean_raw = Path(clean_run[0].storage.root) / "raw" / "scenes"
    assert sorted(s for s, _, _ in shard_members(raw)) == sorted(s for s, _, _ in shard_members(clean_raw))
    assert resumed.downloaded == clean_stats["scenes"].downloaded
    assert resumed.failed == clean_stats["scenes"].failed
    assert not (raw / "_inflight").exists()


def test_rerun_after_a_partial_run_downloads_only_the_missing_shards(tmp_path, demo_directory, served, clean_run,
                                                                     local_ray):
    """What a killed run leaves behind (finished shards, one moved in but for its stats, a private
    folder, a filtered list without its summary, no marker): the rerun downloads the unfinished
    shards only, of the first pass and of the retry pass, and its counts are a clean run's."""
    clean_config, clean_stats = clean_run
    root = tmp_path / "partial"
    raw = root / "raw" / "scenes"
    shutil.copytree(Path(clean_config.storage.root) / "raw" / "scenes", raw)
    (raw / "_vlmix_download.json").unlink()
    first_pass = math.ceil(json.loads((raw / "_urls" / "part-00000.json").read_text())["kept"] / 16)
    (raw / "_urls" / "part-00000.json").unlink()  # its filtering is redone, to the same list
    shards = sorted(p.name.removesuffix("_stats.json") for p in raw.glob("[0-9]*_stats.json"))
    assert 3 <= first_pass < len(shards)  # the first pass's shards, then the retry pass's
    gone, half = [shards[1], shards[-1]], shards[first_pass - 1]  # shards[-1]: the retry pass's last
    for shard in gone:
        for suffix in (".tar", ".parquet", "_stats.json"):
            (raw / f"{shard}{suffix}").unlink()
    (raw / f"{half}_stats.json").unlink()  # killed between moving its tar and its stats
    (raw / "_inflight" / f"{half}-0badc0de").mkdir(parents=True)
    (raw / "_inflight" / f"{half}-0badc0de" / f"{half}.tar").write_bytes(b"half a tar")
    kept = {p.name: p.stat().st_mtime_ns for p in raw.glob("[0-9]*.tar") if p.stem not in (*gone, half)}

    config = load_config(write_config(tmp_path, demo_directory, root))
    resumed = download_all(config, names=["scenes"], progress=False)["scenes"]

    assert sum(resumed.nodes.values()) == len(gone) + 1  # only the unfinished shards were downloaded
    assert {p.name: p.stat().st_mtime_ns for p in raw.glob("[0-9]*.tar") if p.name in kept} == kept
    assert sorted(p.name.removesuffix("_stats.json") for p in raw.glob("[0-9]*_stats.json")) == shards
    resumed.check_balance()
    ignored = ("seconds", "nodes")
    assert ({k: v for k, v in resumed.to_json().items() if k not in ignored}
            == {k: v for k, v in clean_stats["scenes"].to_json().items() if k not in ignored})
    assert json.loads((raw / "_vlmix_download.json").read_text()) == resumed.to_json()
    assert not (raw / "_inflight").exists()
