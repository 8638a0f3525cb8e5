"""A Ray cluster of `ray start` processes on this machine, for the benchmarks, stopped by process id.

``tests/scale/test_cluster.py``'s ``LocalCluster`` starts it (a head with no CPUs plus worker
nodes); this subclass lets a worker node have several CPUs and stops the cluster by the ids of its
own processes (those whose command line names its temp dir or its Ray client server's port, and
their descendants), never by a name pattern that could match another job's Ray.

:func:`run_driver` starts a cluster and runs a benchmark's driver process against it (its JSON
result, with the seconds the cluster took to come up); :func:`removed` deletes a benchmark's data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "scale"))

from test_cluster import LocalCluster, last_json  # noqa: E402


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process this user can read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (parent, cmdline)
    return found


class BenchCluster(LocalCluster):
    """A head with no CPUs and ``workers`` nodes of ``cpus`` CPUs each."""

    def start_nodes(self, workers: int, cpus: int = 1) -> None:
        self.start(cpu_workers=0, gpu_workers=0)
        for _ in range(workers):
            self.add_worker(cpus=cpus)

    def pids(self) -> set[int]:
        processes = _processes()
        client = f"--port={self.client_port}"
        own = {pid for pid, (_, cmd) in processes.items()
               if str(self.temp_dir) in cmd or ("ray.util.client.server" in cmd and client in cmd)}
        own.discard(os.getpid())
        grown = True
        while grown:  # add descendants (Ray's workers rename themselves ray::IDLE, ray::_run)
            more = {pid for pid, (parent, _) in processes.items() if parent in own} - own - {os.getpid()}
            grown = bool(more)
            own |= more
        return own

    def stop(self) -> None:
        pids = self.pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
                time.sleep(0.2)
            pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
            if not pids:
                return


def run_driver(cluster: LocalCluster, start: Callable[[], object], argv: list[str], overrides: list[str],
               *, workers: int, timeout: float) -> dict:
    """Start ``cluster`` (``start()``, timed), run ``python *argv --set o ...`` as a driver process
    in the cluster's environment, and return the JSON of its last line of output, with ``start_s``
    (seconds the cluster took to come up) and ``load`` (the machine's 1-minute load after the run).
    The caller stops the cluster."""
    begin = time.perf_counter()
    start()
    started = time.perf_counter() - begin
    done = subprocess.run(
        [sys.executable, *argv, *sum((["--set", o] for o in overrides), [])],
        cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the run on {workers} node(s) failed:\n{done.stderr[-4000:]}")
    result = last_json(done.stdout)
    result["start_s"] = started
    result["load"] = os.getloadavg()[0]  # after the run, this run's own load included
    return result


@contextlib.contextmanager
def removed(path: Path):
    """Delete a benchmark's data (its inputs, every run's root) when it ends."""
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)
