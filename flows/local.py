"""The embedded default, end to end: a local Prefect server, the deployment, a worker, one run.

    python -m flows.local run [--config configs/demo.yaml] [--deployment local]
    python -m flows.local stop

``run`` starts a Prefect server on 127.0.0.1 (SQLite under ``.vlmix/prefect``, analytics off) unless
one answers already, registers the deployments of ``prefect.yaml`` with a process work pool,
starts a worker, runs ``prefect deployment run build-pretrain-mix/<name> --watch`` and stops the
worker. The server stays up so the run can be browsed in the UI; ``stop`` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POOL = "vlmix-local"


def prefect_environment(port: int) -> dict[str, str]:
    home = Path(os.environ.get("PREFECT_HOME", REPO / ".vlmix" / "prefect"))
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
        "DO_NOT_TRACK": "1",
        "VLMIX_REPO": str(REPO),
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }


def _prefect(*args: str, env: dict[str, str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("prefect")), *args]
    return subprocess.run(command, env=env, cwd=REPO, check=check, **kwargs)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
            return json.loads(response.read()) is True
    except (OSError, ValueError):
        return False


def start_server(env: dict[str, str], port: int, timeout_s: float = 120) -> None:
    if healthy(port):
        return
    print(f"starting a local Prefect server on 127.0.0.1:{port}", flush=True)
    _prefect("server", "start", "--background", "--host", "127.0.0.1", "--port", str(port), env=env,
             stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not healthy(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Prefect server on port {port} did not become healthy in {timeout_s} s")
        time.sleep(0.5)


def deploy(env: dict[str, str]) -> None:
    if _prefect("work-pool", "inspect", POOL, env=env, check=False, capture_output=True).returncode != 0:
        _prefect("work-pool", "create", POOL, "--type", "process", env=env, stdout=subprocess.DEVNULL)
    _prefect("--no-prompt", "deploy", "--all", env=env, stdout=subprocess.DEVNULL)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the worker for its lifetime
    command = [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL, "--type", "process"]
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    # A Prefect worker shrugs off SIGTERM for a long while; SIGINT stops it promptly.
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def run(deployment: str, parameters: dict, port: int) -> int:
    env = prefect_environment(port)
    start_server(env, port)
    deploy(env)
    worker = start_worker(env, Path(env["PREFECT_HOME"]) / "worker.log")
    try:
        args = ["deployment", "run", f"build-pretrain-mix/{deployment}", "--watch"]
        for key, value in parameters.items():
            args += ["--param", f"{key}={json.dumps(value)}"]
        result = _prefect(*args, env=env, check=False)
    finally:
        stop_worker(worker)
    _print_outputs(parameters)
    print(f"Prefect UI:   http://127.0.0.1:{port}  (stop the server with: python -m flows.local stop)")
    return result.returncode


def _print_outputs(parameters: dict) -> None:
    """Where the run's products are: shards, manifest, report, training run."""
    from pipelines.assemble import shard_directory
    from pipelines.config import load_config

    config = load_config(parameters.get("config", REPO / "configs" / "demo.yaml"),
                         overrides=parameters.get("overrides", []))
    shards = shard_directory(config)
    print(f"shards:       {shards}")
    print(f"manifest:     {shards}/manifest.json")
    print(f"report:       {shards}/report.md, {shards}/report.png")
    if config.train is not None:
        print(f"training run: {config.train.out} (tensorboard --logdir {config.train.out}/tensorboard)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "stop"))
    parser.add_argument("--deployment", default="local")
    parser.add_argument("--config", help="config path (default: the deployment's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--port", type=int, default=int(os.environ.get("VLMIX_PREFECT_PORT", "4200")))
    args = parser.parse_args(argv)
    if args.action == "stop":
        return _prefect("server", "stop", env=prefect_environment(args.port), check=False).returncode
    parameters: dict = {}
    if args.config:
        parameters["config"] = str(Path(args.config).resolve())
    if args.overrides:
        parameters["overrides"] = args.overrides
    return run(args.deployment, parameters, args.port)


if __name__ == "__main__":
    sys.exit(main())
