"""`vlmix run` as a batch job: it takes over the lease of a run killed on this host, a second run on
the root is refused naming the holder, and SIGTERM stops it during its stage with exit 143, a line
naming the stage, and no process of the run left (what SIGKILL leaves is tests/flows/test_guardian.py's).

One run of the download stage against a loopback server that never answers, so the stage is in
progress (Ray up, img2dataset waiting) whenever the run is signalled; one run stopped in the middle of
its OCR stage and resumed, whose shards are then the bytes of a run never stopped. Every process of a
run carries the test's own environment mark, which is how the test looks for leftovers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.processes import command_line, tagged

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MARK = "VLMIX_TEST_STOP_MARK"


@pytest.fixture
def silent_server():
    """A TCP server on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, done = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    done.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def _config(tmp_path: Path, base: str) -> Path:
    urls = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": [f"{base}/{i}.jpg" for i in range(8)], "caption": [f"a picture {i}" for i in range(8)]}),
                   urls)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
storage: {{root: "{tmp_path / 'root'}"}}
ray: {{num_cpus: 1}}
tasks: {{captioning: {{share: 1.0}}}}
download: {{timeout_s: 120, retry_rounds: 0}}
sources:
  - {{name: pictures, kind: url_list, task: captioning, language: en, locations: ["{urls}"]}}
""")
    return config


def _start(config: Path, progress: Path, mark: str) -> subprocess.Popen:
    env = {**os.environ, MARK: mark, "VLMIX_PROGRESS_FILE": str(progress), "VLMIX_STOP_GRACE_S": "5",
           "PREFECT_HOME": str(progress.parent / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--stage", "download"],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _in_stage(run: subprocess.Popen, progress: Path, mark: str, timeout_s: float = 240) -> None:
    """Wait until the download stage started and Ray's processes of this run are up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()
        events = [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []
        started = any(e.get("kind") == "stage" and e.get("stage") == "download" and e.get("status") == "started"
                      for e in events)
        if started and any("raylet" in command_line(pid) for pid in tagged(MARK, mark)):
            time.sleep(2)  # img2dataset's tasks under way
            return
        time.sleep(0.5)
    raise AssertionError(f"the run did not reach its download stage in {timeout_s} s")


def _left(mark: str, within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        left = [f"{pid} {command_line(pid)[:100]}" for pid in tagged(MARK, mark)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_sigterm_stops_the_stage_cleanly_and_a_second_run_is_refused(tmp_path, silent_server):
    config = _config(tmp_path, silent_server)
    mark = uuid.uuid4().hex
    progress = tmp_path / "progress.jsonl"
    (tmp_path / "root" / "_run").mkdir(parents=True)
    # A lease left by a run killed on this host (its process is gone): taken over, with a notice.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "root" / "_run" / "lease.json").write_text(json.dumps(
        {"run_id": "killed-run", "host": socket.gethostname(), "pid": int(gone.stdout), "started": time.time() - 60,
         "heartbeat": time.time() - 5}))

    run = _start(config, progress, mark)
    _in_stage(run, progress, mark)
    second = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--stage", "download"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 1 and "is in use by run" in second.stderr and f"pid {run.pid}" in second.stderr

    stopped_at = time.monotonic()
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 143, err[-3000:]
    assert time.monotonic() - stopped_at < 30
    assert "took over the lease" in err and "killed-run" in err
    assert "stopped by SIGTERM during stage download" in err and "rerun the same command to resume" in err
    assert "SIGTERM received" not in err and "PC: @" not in err  # no native stack dump
    assert _left(mark, within_s=5) == []  # Prefect's server, Ray, img2dataset: all gone
    assert not (tmp_path / "root" / "_run" / "lease.json").exists()


OCR_CONFIG = """
storage: {{root: "{root}"}}
ray: {{num_cpus: 1}}
tasks: {{ocr_large: {{share: 1.0}}}}
mixture: {{total_samples: 12}}
shards: {{max_samples: 5}}
ocr: {{model: PP-OCRv6_tiny, concurrency: 1, batch_size: 1}}
sources:
  - {{name: signs, kind: url_list, task: ocr_large, language: en, locations: ["{root}/urls.parquet"], ocr: {{language: en}}}}
"""


def _ocr_root(root: Path) -> Path:
    """Six raw shards of OCR pages, as img2dataset leaves them (the download done), and the run's config."""
    from download.context import STATS_FILE
    from download.stats import DownloadStats
    from tests.ocr.ocr_synth import heldout_set, jpeg_bytes, write_raw_shard

    pages = heldout_set("en", "clean", pages=6)
    keys = [key for shard, page in enumerate(pages)
            for key in write_raw_shard(root / "raw" / "signs", shard, [jpeg_bytes(page.image)])]
    pq.write_table(pa.table({"url": [f"http://127.0.0.1/{key}.jpg" for key in keys]}), root / "urls.parquet")
    # The download stage's own record of a finished source: it keeps these shards and moves on.
    (root / "raw" / "signs" / STATS_FILE).write_text(json.dumps(
        DownloadStats("signs", urls=6, downloaded=6, shards=6).to_json()))
    config = root.parent / f"{root.name}.yaml"
    config.write_text(OCR_CONFIG.format(root=root))
    return config


def _run(config: Path, progress: Path, mark: str, stages=()) -> subprocess.Popen:
    env = {**os.environ, MARK: mark, "VLMIX_PROGRESS_FILE": str(progress), "VLMIX_STOP_GRACE_S": "5",
           "PREFECT_HOME": str(progress.parent / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)
    stage_args = [arg for stage in stages for arg in ("--stage", stage)]
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--config", str(config), *stage_args],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_during_ocr_then_a_rerun_gives_the_uninterrupted_runs_shards(tmp_path):
    """Stopped mid-OCR (a shard written, the OCR actor up), resumed: the shards and manifest are the
    bytes of a run that was never stopped, under another root."""
    stopped, straight = _ocr_root(tmp_path / "stopped"), _ocr_root(tmp_path / "straight")
    mark, progress = uuid.uuid4().hex, tmp_path / "progress.jsonl"
    run = _run(stopped, progress, mark)
    corpus = tmp_path / "stopped" / "ocr" / "signs"
    deadline = time.monotonic() + 300
    while not list(corpus.glob("*.parquet")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=90)
    assert run.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM during stage ocr" in err
    assert _left(mark, within_s=10) == []  # the OCR actor and Ray gone with the run
    done_before = len(list(corpus.glob("*.parquet")))
    assert 0 < done_before < 6, "the stop did not land mid-stage"

    for config in (stopped, straight):
        again = _run(config, tmp_path / f"{config.stem}.jsonl", uuid.uuid4().hex)
        out, err = again.communicate(timeout=600)
        assert again.returncode == 0, (out + err)[-3000:]
    shards = {root: {p.name: p.read_bytes() for p in sorted((tmp_path / root / "shards").iterdir())}
              for root in ("stopped", "straight")}
    assert len(shards["stopped"]) >= 4 and shards["stopped"] == shards["straight"]
    resumed = json.loads((corpus / "stats.json").read_text())
    assert resumed["shards_this_run"] == 6 - done_before  # what the stopped run finished was kept
