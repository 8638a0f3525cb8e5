"""The launcher's local Prefect server: a stale pid file of a live unrelated process, a half-started server."""

from __future__ import annotations

import socket
import subprocess

import pytest

from flows import processes
from flows.local import base_environment
from flows.server import _start, ensure_server, healthy, stop_recorded

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stale_pid_of_another_program_and_a_half_started_server(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_UI_ENABLED", "false")
    home = tmp_path / "prefect"
    home.mkdir()
    environment = base_environment(home)
    said: list[str] = []
    bystander = subprocess.Popen(["sleep", "300"])  # the pid file names a live program that is not ours
    try:
        (home / "server.pid").write_text(str(bystander.pid))
        port = free_port()
        server = ensure_server(home, port, environment, said.append)
        assert said[0] == (f"removing a stale {home / 'server.pid'} (pid {bystander.pid} is not a running "
                           f"Prefect server of {home})")
        assert processes.alive(bystander.pid)  # never signalled
        assert server.port == port and healthy(port)
        server.stop()
        assert not healthy(port) and not (home / "server.pid").exists()

        said.clear()
        starting = _start(home, port, environment)  # as a launcher that died during startup leaves it
        again = ensure_server(home, port, environment, said.append)
        assert said[0].startswith(f"a Prefect server (pid {starting.pid}) is starting or not answering")
        assert said[-1] == f"reusing the Prefect server on http://127.0.0.1:{port} (pid {starting.pid})"
        assert again.pid == starting.pid and healthy(port)
        assert stop_recorded(home) == f"stopped the Prefect server (pid {starting.pid})"
        starting.process.wait(timeout=10)
        assert not healthy(port)
        assert stop_recorded(home) == "no local Prefect server is recorded as running"
    finally:
        bystander.kill()
        bystander.wait()
