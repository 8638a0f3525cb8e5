"""The README's first command, `python -m flows.local run` (what scripts/demo.sh runs), from a fresh
clone, as a new user would run it again and again.

- a run stopped by SIGTERM during its translation, then, under a CPU hog on every core, three runs
  in a row complete: the whole demo (a small scale, with Japanese added by overrides)
  through the local Prefect server, the `local` deployment and a worker; again, reusing the server
  kept up by the first and skipping every stage; again, after a crash left a stale pid file and
  another program took the port;
- killing the Prefect server in the middle of a run (the download, once its Ray is up): a non-zero
  exit naming the stage that was running, the server's log pointed at, and no process of the run
  (worker, flow run, Ray) left behind.

Each process the launcher starts inherits the environment, so a mark put there by the test finds
every one of them (Ray, OCR actors, vLLM, the worker, the flow run) independently of the launcher.
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

import pytest

from flows import processes
from flows.config import load_config
from flows.registry import REGISTRY

REPO = Path(__file__).resolve().parents[2]
MARK = "VLMIX_TEST_MARK"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / ".venv-vllm" / "bin" / "python").exists(),
                       reason="needs ./.venv-vllm (scripts/setup_vllm.sh, run by scripts/setup.sh)"),
]

SMALL = ["demo.scale=0.03", "download.timeout_s=1", "mixture.total_samples=300", "train.steps=4",
         # a language added by config alone (the registry has ja): it must reach the shards
         "translation.targets=[zh, ja]", "sources.1.translate_to=[zh, ja]"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of this checkout's committed tree: no .vlmix, no data, no environments."""
    target = tmp_path_factory.mktemp("clone") / "vlmix"
    subprocess.run(["git", "clone", "--quiet", "--local", str(REPO), str(target)], check=True)
    return target


@pytest.fixture
def hog():
    """``start()`` a bounded busy loop on every core; stopped after the test."""
    loop = "import time\nend = time.monotonic() + 1800\nwhile time.monotonic() < end: pass\n"
    burners: list[subprocess.Popen] = []

    def start() -> None:
        burners.extend(subprocess.Popen([sys.executable, "-c", loop]) for _ in range(os.cpu_count() or 2))

    yield start
    for burner in burners:
        burner.kill()
        burner.wait()


def marked(mark: str) -> list[int]:
    return processes.tagged(MARK, mark)


def wait_unmarked(mark: str, keep: set[int] = frozenset(), timeout_s: float = 10) -> list[str]:
    """The marked processes (but ``keep``) still there after ``timeout_s``: their command lines."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [pid for pid in marked(mark) if pid not in keep]
        if not left or time.monotonic() > deadline:
            # What is needed to tell where a leftover came from: its parent and whether it has the run's tag.
            return [f"{pid} {processes.command_line(pid)[:150]} (parent {_parent(pid)}, run tag "
                    f"{processes.environment_value(pid, processes.TAG_ENV)})" for pid in left]
        time.sleep(0.5)


def _parent(pid: int) -> str:
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return "?"
    return f"{parent} {processes.command_line(parent)[:80]}"


class Launcher:
    def __init__(self, clone: Path, port: int, home: Path | None = None):
        self.clone, self.port, self.mark = clone, port, uuid.uuid4().hex
        self.home = home or clone / ".vlmix" / "prefect"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update({MARK: self.mark, "PREFECT_UI_ENABLED": "false",
                         "VLMIX_VLLM_PYTHON": str(REPO / ".venv-vllm" / "bin" / "python")})
        if home is not None:
            self.env["PREFECT_HOME"] = str(home)

    def command(self, *args: str, overrides: list[str] = ()) -> list[str]:
        sets = [x for o in overrides for x in ("--set", o)]
        return [sys.executable, "-m", "flows.local", "run", "--config", "configs/demo.yaml",
                "--port", str(self.port), *sets, *args]

    def run(self, *args: str, overrides: list[str] = SMALL, timeout_s: float = 1200) -> tuple[int, str, float]:
        started = time.monotonic()
        done = subprocess.run(self.command(*args, overrides=overrides), cwd=self.clone, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
        seconds = time.monotonic() - started
        print(f"\n--- launcher {' '.join(args)}: exit {done.returncode} in {seconds:.0f} s ---\n{done.stdout}")
        return done.returncode, done.stdout, seconds

    def server_pid(self) -> int:
        return int((self.home / "server.pid").read_text())


def stop_during_translation(launcher: Launcher, timeout_s: float = 1200) -> tuple[str, float]:
    """Run the demo, SIGTERM the launcher once the translate stage runs and a vLLM process of the run is
    up, and check how it stopped; its output and seconds."""
    started = time.monotonic()
    process = subprocess.Popen(launcher.command(overrides=SMALL), cwd=launcher.clone, env=launcher.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        while True:
            assert process.poll() is None and time.monotonic() - started < timeout_s, "".join(lines)[-6000:]
            vllm = [pid for pid in marked(launcher.mark) if "vllm" in processes.command_line(pid)]
            if vllm and any("stage translate: started" in line for line in lines):
                break
            time.sleep(1)
        time.sleep(3)  # requests in flight
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(timeout=10)
    out = "".join(lines)
    print(f"\n--- launcher stopped by SIGTERM: exit {process.returncode} ---\n{out}")
    assert process.returncode == 143, out[-6000:]
    assert time.monotonic() - signalled < 60
    assert "stopped by SIGTERM during stage translate" in out and "rerun the same command to resume" in out
    # The Prefect server, worker, Ray, vLLM: all gone (Ray's agents watch their raylet for a few seconds).
    assert wait_unmarked(launcher.mark, timeout_s=45) == []
    return out, time.monotonic() - started


def test_three_runs_in_a_row_under_load(clone, hog):
    launcher = Launcher(clone, free_port())
    code = subprocess.run([sys.executable, "-c", "import flows.local; print(flows.local.__file__)"], cwd=clone,
                          capture_output=True, text=True).stdout
    assert code.startswith(str(clone))  # the clone's code runs, not this checkout's

    # 0. Stopped by SIGTERM (what Slurm and Kubernetes send) once its translation is under way with
    # vLLM up: exit 143 within seconds, the stage named, nothing of the run left (vLLM included).
    stopped, stopped_s = stop_during_translation(launcher)
    assert "Traceback" not in stopped
    launcher.mark = launcher.env[MARK] = uuid.uuid4().hex

    # 1. The whole demo, resumed under a CPU hog on every core; the server kept up for the UI.
    hog()
    rc, out, first_s = launcher.run("--keep-server")
    assert rc == 0, out
    demo_stages = [stage.name for stage in REGISTRY if stage.enabled_for(load_config(clone / "configs" / "demo.yaml"))]
    assert {"download", "pdf", "ocr", "translate", "tasks", "mix", "train"} <= set(demo_stages)
    before = demo_stages[:demo_stages.index("translate")]
    for stage in demo_stages:  # what the stopped run completed is kept, not done again
        assert f"stage {stage}: done in" in (stopped if stage in before else out)
        if stage in before:
            assert f"stage {stage}: skipped (unchanged since its last run)" in out
    assert "ocr demo_wukong_ocr: " in stopped and "samples/s" in stopped and "drops " in stopped  # progress lines
    assert "Traceback" not in out
    shards = clone / "data" / "demo" / "shards"
    assert f"manifest:     {shards}/manifest.json" in out and (shards / "manifest.json").exists()
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["languages"]["ja"]["samples"] > 0 and "demo_objects365-ja" in manifest["sources"]
    for task, share in {"captioning": 0.539, "detection": 0.052, "ocr_large": 0.32, "ocr_small": 0.089}.items():
        assert abs(manifest["tasks"][task]["achieved_share"] - share) <= 0.005
    from shards import verify

    assert verify(shards).problems == []
    # The demo's model is asked for what its translation memory leaves out, and its answers are checked.
    translate = json.loads((clone / "data" / "demo" / "_stages" / "translate.json").read_text())["summary"]
    coyo = translate["demo_coyo"]["zh"]
    assert coyo["requests"] > 0 and sum(coyo["flagged"].values()) > 0
    assert f"{coyo['requests']} requests to the model" in out
    steps = [json.loads(x) for x in (clone / "data" / "demo-train" / "metrics.jsonl").read_text().splitlines()]
    losses = [step["loss"] for step in steps if "loss" in step]
    assert len(losses) == 4 and losses[-1] < losses[0]
    server = launcher.server_pid()
    assert wait_unmarked(launcher.mark, keep={server}) == []  # all but the server the user asked to keep

    # 2. Again: the kept server is reused, every stage skipped; this time nothing stays up.
    launcher.mark = launcher.env[MARK] = uuid.uuid4().hex
    rc, out, second_s = launcher.run()
    assert rc == 0, out
    assert f"reusing the Prefect server on http://127.0.0.1:{launcher.port} (pid {server})" in out
    assert out.count("skipped (unchanged since its last run)") == len(demo_stages)
    assert "registering the deployments" not in out  # this server has them already
    assert not processes.alive(server) and not (launcher.home / "server.pid").exists()
    assert wait_unmarked(launcher.mark) == []

    # 3. After a crash: a stale pid file, and the port taken by another program meanwhile.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (launcher.home / "server.pid").write_text(str(gone.pid))
    (launcher.home / "server.port").write_text(str(launcher.port))
    launcher.mark = launcher.env[MARK] = uuid.uuid4().hex
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the stopped server's TIME_WAITs
        squatter.bind(("127.0.0.1", launcher.port))
        squatter.listen()
        rc, out, third_s = launcher.run()
    assert rc == 0, out
    assert f"removing a stale {launcher.home / 'server.pid'} (pid {gone.pid} is not a running" in out
    assert f"port {launcher.port} is in use by another program; starting the Prefect server on port" in out
    assert out.count("skipped (unchanged since its last run)") == len(demo_stages) and "Traceback" not in out
    assert wait_unmarked(launcher.mark) == []
    print(f"stopped run {stopped_s:.0f} s; under the hog: resumed to the end {first_s:.0f} s, rerun {second_s:.0f} s, "
          f"rerun after a crash {third_s:.0f} s")


def test_killing_the_server_mid_run_fails_the_run_and_leaves_nothing(clone, tmp_path):
    # No CPU hog here: what is tested is how the run fails, not how it copes with load.
    launcher = Launcher(clone, free_port(), home=tmp_path / "prefect")
    overrides = [*SMALL, f"storage.root={tmp_path / 'root'}", f"demo.directory={tmp_path / 'demo'}"]
    process = subprocess.Popen(launcher.command("--stage", "download", overrides=overrides),
                               cwd=clone, env=launcher.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    watchdog = threading.Timer(900, process.kill)
    watchdog.start()
    lines, killed_at = [], None
    try:
        for line in process.stdout:
            lines.append(line)
            if killed_at is None and "stage download: started" in line:
                # In the middle of the download, once the run's local Ray is up (it must go too).
                deadline = time.monotonic() + 120
                while not any("raylet" in processes.command_line(pid) for pid in marked(launcher.mark)):
                    assert time.monotonic() < deadline, "no Ray started by the download stage"
                    time.sleep(0.2)
                os.kill(launcher.server_pid(), signal.SIGKILL)
                killed_at = time.monotonic()
        rc = process.wait()
    finally:
        watchdog.cancel()
    out = "".join(lines)
    print(out)
    assert killed_at is not None, out
    assert rc == 1, out
    assert "FAILED" in out and "stage download: the Prefect server was killed by signal 9" in out
    assert f"the last lines that matter of {launcher.home / 'server.log'}" in out
    assert "Traceback" not in out.split("--- the last lines")[0]  # the launcher's own words: no traceback
    assert "manifest:" not in out  # no products announced that do not exist
    assert wait_unmarked(launcher.mark) == []  # worker, flow run, Ray, OCR actors: all gone
    assert time.monotonic() - killed_at < 120
