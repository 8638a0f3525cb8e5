"""The embedded default, end to end: a local Prefect server, the deployment, a worker, one run.

    python -m flows.local run [--config configs/demo.yaml] [--set path=value ...] [--stage NAME ...]
                              [--deployment local] [--port 4200] [--keep-server]
    python -m flows.local stop

``run`` checks the config, finds or starts a local Prefect server on 127.0.0.1 (SQLite under
``.vlmix/prefect``, analytics off, its log in ``.vlmix/prefect/server.log``; see
:mod:`flows.server`), registers the deployments of ``prefect.yaml`` with a process work pool,
starts a worker (``.vlmix/prefect/worker.log``), creates a run of ``build-pretrain-mix/<name>``
and follows it: each stage's start, progress (units done of total, samples/s, ETA, drops) and end.

It exits 0 when the flow run completed and then prints where the products are; 1 when it did not,
naming the stage that failed, its error and the last lines of the log that explain it, or when
another run holds the storage root's lease (:mod:`pipelines.lease`); 2 for an invalid config; 130
(SIGINT) or 143 (SIGTERM) when stopped. A guardian process stops what the run started if the
launcher itself is killed. Whatever the ending, the processes the run started (the
worker, the flow run, Ray and its OCR actors, vLLM servers) are stopped, and so is the server
unless ``--keep-server`` (or ``VLMIX_KEEP_SERVER=1``) keeps it up for the UI; ``stop`` stops it then.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from flows import processes
from flows.server import CLIENT_SETTINGS, LocalServer, ServerError, ensure_server, stop_recorded, tail
from flows.watch import ApiError, Outcome, RunWatch, api, cancel_flow_run, create_flow_run

REPO = Path(__file__).resolve().parents[1]
POOL = "vlmix-local"
FLOW = "build-pretrain-mix"


class LaunchError(RuntimeError):
    """A step before the run failed; the message says which and why."""


def say(text: str) -> None:
    print(text, flush=True)


def prefect_home() -> Path:
    home = Path(os.environ.get("PREFECT_HOME", REPO / ".vlmix" / "prefect")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def base_environment(home: Path) -> dict[str, str]:
    """What the server and every Prefect command of the launcher run with."""
    environment = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
        "DO_NOT_TRACK": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }
    environment.pop("PREFECT_API_URL", None)  # the server must not be told to talk to another one
    environment.pop(processes.TAG_ENV, None)
    return environment


def run_environment(home: Path, port: int, tag: str, progress_file: Path) -> dict[str, str]:
    """What the Prefect commands, the worker and (through it) the flow run run with."""
    return {
        **base_environment(home),
        **CLIENT_SETTINGS,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "3",  # one local worker: pick the run up quickly
        "VLMIX_REPO": str(REPO),  # prefect.yaml's pull step: run the flow from this checkout
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        processes.TAG_ENV: tag,  # every process of the run carries it: see flows.processes
        "VLMIX_PROGRESS_FILE": str(progress_file),
    }


def _prefect(*args: str, env: dict[str, str], timeout_s: float = 300) -> None:
    command = [str(Path(sys.executable).with_name("prefect")), *args]
    try:
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise LaunchError(f"`prefect {' '.join(args)}` did not finish in {timeout_s:.0f} s") from err
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise LaunchError(f"`prefect {' '.join(args)}` exited with {done.returncode}:\n{output}")


def _deployed_marker(home: Path) -> tuple[Path, str]:
    """Where the launcher notes what it registered, and what there is to register now."""
    digest = hashlib.sha256()
    for path in (REPO / "prefect.yaml", REPO / "flows" / "build_pretrain_mix.py", REPO / "flows" / "registry.py"):
        digest.update(path.read_bytes())
    return home / "deployed.sha256", digest.hexdigest()


def deploy(env: dict[str, str], base_url: str, deployment: str) -> None:
    """Register the work pool and the deployments of prefect.yaml, unless this server has them as they are."""
    marker, digest = _deployed_marker(Path(env["PREFECT_HOME"]))
    if marker.exists() and marker.read_text() == digest:
        try:
            api(base_url, "GET", f"/deployments/name/{FLOW}/{deployment}")
            api(base_url, "GET", f"/work_pools/{POOL}")
            return
        except ApiError:
            pass  # a new database, or the deployment was deleted: register again
    say("registering the deployments of prefect.yaml")
    try:
        _prefect("work-pool", "inspect", POOL, env=env, timeout_s=120)
    except LaunchError:
        _prefect("work-pool", "create", POOL, "--type", "process", env=env)
    _prefect("--no-prompt", "deploy", "--all", env=env)
    marker.write_text(digest)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} worker for run {env[processes.TAG_ENV]}\n".encode())
        log.flush()
        command = [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL,
                   "--type", "process"]
        return subprocess.Popen(command, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    # A Prefect worker shrugs off SIGTERM for a long while; SIGINT stops it promptly.
    if worker.poll() is None:
        processes.stop_group(worker.pid, grace_s=30, first=signal.SIGINT)
    worker.wait()


_STOPPED_BY: list[int] = []


def _interrupt(signum, frame):
    _STOPPED_BY.append(signum)
    raise KeyboardInterrupt


def run(deployment: str, parameters: dict, port: int, keep_server: bool = False) -> int:
    from flows.report import check_config, print_products
    from pipelines.lease import Lease, LeaseHeld

    config = check_config(parameters, deployment)
    if config is None:
        return 2
    home = prefect_home()
    tag = uuid.uuid4().hex[:12]
    try:  # one run per storage root (pipelines.lease)
        lease = Lease(config.storage.open(), run_id=tag).acquire()
    except LeaseHeld as err:
        say(f"error: {err}")
        return 1
    if lease.notice:
        say(f"notice: {lease.notice}")
    guardian = processes.start_guardian(os.getpid(), tag)  # stops the run's processes if this one is killed
    processes.become_subreaper()  # what dies below the launcher leaves its orphans with it, not with init
    runs = home / "runs"
    runs.mkdir(exist_ok=True)
    for old in sorted(runs.glob("*.jsonl"))[:-20]:
        old.unlink(missing_ok=True)
    progress_file = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{tag}.jsonl"
    progress_file.touch()
    worker_log = home / "worker.log"
    server: LocalServer | None = None
    worker = flow_run = None
    outcome: Outcome | None = None
    code = 1
    previous = signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        server = ensure_server(home, port, base_environment(home), say)
        env = run_environment(home, server.port, tag, progress_file)
        deploy(env, server.url, deployment)
        worker = start_worker(env, worker_log)
        flow_run = create_flow_run(server.url, FLOW, deployment, parameters)
        say(f"flow run {flow_run['name']} of {FLOW}/{deployment} created; following it "
            f"(logs: {server.log}, {worker_log}, UI {server.url}/runs/flow-run/{flow_run['id']})")
        outcome = RunWatch(progress_file, say).follow(server.url, flow_run["id"], server, worker, worker_log)
        code = 0 if outcome.completed else 1
    except (ServerError, LaunchError, ApiError) as err:
        say(f"\nFAILED: {err}")
        _show_log(home / "server.log")
    except KeyboardInterrupt:
        from flows.supervise import current_stage

        stage, where = current_stage(progress_file)
        name = signal.Signals(_STOPPED_BY[-1] if _STOPPED_BY else signal.SIGINT).name
        during = f"during stage {stage}" + (f" ({where})" if where else "") if stage else "before its first stage"
        say(f"\nstopped by {name} {during}: completed units are kept; rerun the same command to resume")
        if flow_run is not None and server is not None and server.running():
            cancel_flow_run(server.url, flow_run["id"], "interrupted in the launcher")
        code = 128 + (_STOPPED_BY[-1] if _STOPPED_BY else signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if worker is not None:
            stop_worker(worker)
        left = processes.stop_tagged(tag)
        if left:
            with open(worker_log, "a") as log:
                log.write("stopped after the run: " + "; ".join(left) + "\n")
        server_up = server is not None and server.running()
        if server is not None and not (keep_server and server_up):
            server.stop()
        # Once more, now that everything above is down: what a dying process started meanwhile.
        late = processes.stop_tagged(tag, grace_s=5)
        # And whatever is still below the launcher, tagged or not (orphans come to it): only the
        # guardian and the server kept for the UI stay.
        kept = {guardian.pid} | ({server.pid} if server is not None and keep_server and server_up else set())
        late += processes.stop_below(keep=kept)
        if late:
            with open(worker_log, "a") as log:
                log.write("stopped after the server: " + "; ".join(late) + "\n")
        lease.release()
        guardian.terminate()
        guardian.wait()
    elapsed = time.monotonic() - started
    if outcome is not None and outcome.completed:
        say(f"\n{FLOW} completed in {elapsed / 60:.1f} min")
        print_products(config)
    elif outcome is not None:
        where = f"stage {outcome.failed_stage}" if outcome.failed_stage else "the flow"
        say(f"\nFAILED after {elapsed / 60:.1f} min: {where}: {outcome.error}")
        if outcome.message and outcome.message != outcome.error:
            say(f"flow run state {outcome.state}: {outcome.message}")
        if outcome.log_to_show:
            _show_log(outcome.log_to_show)
    if server is not None and keep_server and server_up:
        say(f"Prefect UI:   {server.url}  (stop the server with: python -m flows.local stop)")
    elif server is not None:
        say(f"the Prefect server was stopped (--keep-server keeps it up for the UI); logs in {home}")
    return code


def _show_log(path: Path) -> None:
    text = tail(path)
    if text:
        say(f"--- the last lines that matter of {path} ---\n{text}\n--- end of {path} ---")
    else:
        say(f"(nothing in {path})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "stop"))
    parser.add_argument("--deployment", default="local")
    parser.add_argument("--config", help="config path (default: the deployment's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--stage", dest="stages", action="append", default=[], metavar="NAME",
                        help="run only these stages (default: all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("VLMIX_PREFECT_PORT", "4200")))
    parser.add_argument("--keep-server", action="store_true", default=os.environ.get("VLMIX_KEEP_SERVER") == "1",
                        help="leave the Prefect server up after the run, for the UI")
    args = parser.parse_args(argv)
    if args.action == "stop":
        say(stop_recorded(prefect_home()))
        return 0
    parameters: dict = {}
    if args.config:
        parameters["config"] = str(Path(args.config).resolve())
    if args.overrides:
        parameters["overrides"] = args.overrides
    if args.stages:
        parameters["stages"] = args.stages
    return run(args.deployment, parameters, args.port, keep_server=args.keep_server)


if __name__ == "__main__":
    sys.exit(main())
