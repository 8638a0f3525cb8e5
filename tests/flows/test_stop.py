"""`vlmix run` as a batch job: it takes over the lease of a run killed on this host, a second run on
the root is refused naming the holder, and SIGTERM stops it during its stage with exit 143, a line
naming the stage, and no process of the run left (what SIGKILL leaves is tests/flows/test_guardian.py's).

One run of the download stage against a loopback server that never answers, so the stage is in
progress (Ray up, img2dataset waiting) whenever the run is signalled. Every process of a run carries
the test's own environment mark, which is how the test looks for leftovers.
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
