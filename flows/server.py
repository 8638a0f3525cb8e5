"""The launcher's local Prefect server: found or started, configured to hold under load, its log kept.

The server runs as ``prefect server start`` in the foreground of a session of its own, its output
in ``<PREFECT_HOME>/server.log``; ``server.pid`` (the file ``prefect server stop`` reads too) and
``server.port`` say where it is. (``prefect server start --background`` pipes the server's output
to the short-lived CLI process: once that has exited, the first error the server logs, such as a
500 on a busy database, kills it with SIGPIPE and leaves ``server.pid`` behind.)

:func:`ensure_server` reuses a healthy server of this ``PREFECT_HOME``, waits for a half-started
one, removes a stale pid file, and picks another port when something else holds the one asked for,
saying what it did each time.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flows import processes

# What keeps a SQLite-backed server answering while Ray, OCR actors and vLLM share two cores with it
# (every name is a documented Prefect 3 setting).
SERVER_SETTINGS = {
    # Wait longer for the database's write lock and for a pooled connection (defaults 10, 5, 30 s);
    # SQLite runs in WAL mode already (Prefect's default PRAGMAs).
    "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
    "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT": "60",
    # Fewer writers: services a local run never needs (schedules, late runs, automations, pauses,
    # concurrency leases) stay off; events and task-run states are written in batches.
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "5",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "20",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "2",
}
# For the server's clients (the worker, the flow run): retry a 500 of a busy server too, and
# send logs in fewer, larger batches.
CLIENT_SETTINGS = {
    "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500",
    "PREFECT_CLIENT_MAX_RETRIES": "8",
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "5",
}
STARTUP_TIMEOUT_S = 180.0


class ServerError(RuntimeError):
    """The server could not be started or found; the message says why and where its log is."""


@dataclass
class LocalServer:
    home: Path
    port: int
    pid: int
    process: subprocess.Popen | None = None  # set when this launcher started it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return processes.alive(self.pid)

    def exit_status(self) -> str:
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return "exited"
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def stop(self) -> None:
        processes.stop_group(self.pid)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        for name in ("server.pid", "server.port"):
            (self.home / name).unlink(missing_ok=True)


def healthy(port: int, timeout_s: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=timeout_s) as response:
            return json.loads(response.read()) is True
    except (OSError, ValueError):
        return False


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_from(port: int, tries: int = 20) -> int:
    for candidate in range(port + 1, port + 1 + tries):
        if port_free(candidate):
            return candidate
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ours(pid: int, home: Path) -> bool:
    """``pid`` is a Prefect server process of this ``PREFECT_HOME`` (not an unrelated reused pid)."""
    if not processes.alive(pid):
        return False
    command = processes.command_line(pid)
    home_of = processes.environment_value(pid, "PREFECT_HOME")
    return ("prefect" in command or "uvicorn" in command) and home_of is not None and \
        Path(home_of).resolve() == home.resolve()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def wait_healthy(server: LocalServer, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.running():
            return False
        if healthy(server.port):
            return True
        time.sleep(1.0)
    return False


def ensure_server(home: Path, port: int, environment: dict[str, str], say: Callable[[str], None],
                  timeout_s: float = STARTUP_TIMEOUT_S) -> LocalServer:
    """A healthy server of ``home``: the one already running, else a new one (see the module doc)."""
    pid_file, port_file = home / "server.pid", home / "server.port"
    pid = _read_int(pid_file)
    if pid is not None:
        recorded = _read_int(port_file) or port
        if _ours(pid, home):
            server = LocalServer(home, recorded, pid)
            if healthy(recorded):
                say(f"reusing the Prefect server on {server.url} (pid {pid})")
                return server
            say(f"a Prefect server (pid {pid}) is starting or not answering on {server.url}; waiting for it")
            if wait_healthy(server, min(timeout_s, 60.0)):
                say(f"reusing the Prefect server on {server.url} (pid {pid})")
                return server
            say(f"stopping the unresponsive Prefect server (pid {pid}); starting a new one")
            server.stop()
        else:
            say(f"removing a stale {pid_file} (pid {pid} is not a running Prefect server of {home})")
        pid_file.unlink(missing_ok=True)
        port_file.unlink(missing_ok=True)
    elif port_file.exists():
        port_file.unlink()
    for _attempt in range(3):
        if not port_free(port):
            other = free_port_from(port)
            say(f"port {port} is in use by another program; starting the Prefect server on port {other} instead")
            port = other
        server = _start(home, port, environment)
        say(f"starting a local Prefect server on {server.url} (pid {server.pid}, log {server.log})")
        if wait_healthy(server, timeout_s):
            return server
        if server.running():
            server.stop()
            raise ServerError(f"the Prefect server on {server.url} did not answer within {timeout_s:.0f} s")
        log_text = tail(server.log, 200)
        server.stop()
        if "address already in use" not in log_text.lower():  # else: taken meanwhile, try another port
            raise ServerError(f"the Prefect server {server.exit_status()} while starting")
    raise ServerError("could not find a free port for the Prefect server")


def _start(home: Path, port: int, environment: dict[str, str]) -> LocalServer:
    env = {**environment, **SERVER_SETTINGS, "PREFECT_SERVER_API_PORT": str(port)}
    log_path = home / "server.log"
    with open(log_path, "ab") as sink:
        sink.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting on 127.0.0.1:{port}\n".encode())
        sink.flush()
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the terminal's process group: a Ctrl-C is the launcher's to handle
        )
    (home / "server.pid").write_text(str(process.pid))
    (home / "server.port").write_text(str(port))
    return LocalServer(home, port, process.pid, process)


def stop_recorded(home: Path) -> str:
    """Stop the server ``home``'s pid file names (``python -m flows.local stop``); what happened."""
    pid = _read_int(home / "server.pid")
    if pid is None:
        return "no local Prefect server is recorded as running"
    port = _read_int(home / "server.port") or 0
    if not _ours(pid, home):
        for name in ("server.pid", "server.port"):
            (home / name).unlink(missing_ok=True)
        return f"removed a stale pid file (pid {pid} is not a running Prefect server)"
    LocalServer(home, port, pid).stop()
    return f"stopped the Prefect server (pid {pid})"


_MATTERS = re.compile(r"error|exception|traceback|critical|killed|refused|locked|timeout|failed", re.I)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log that matter: errors and their tracebacks first, then the very end."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    last = text[-200:]
    marked = [i for i, line in enumerate(last) if _MATTERS.search(line)]
    end = min(len(last), marked[-1] + 6) if marked else len(last)
    return "\n".join(last[max(0, end - lines):end])
