"""The README's front door: a local Prefect server, the `local` deployment, a worker, one run.

`python -m flows.local run` is what `scripts/demo.sh` runs; here it runs the download stage of a
small demo mixture through `prefect deployment run build-pretrain-mix/local --watch`.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from flows import local
from flows.server import healthy

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deployment_run_through_a_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_UI_ENABLED", "false")
    port = free_port()
    parameters = {
        "config": str(REPO / "configs" / "demo.yaml"),
        "stages": ["download"],
        "overrides": [f"storage.root={tmp_path / 'root'}", f"demo.directory={tmp_path / 'demo'}",
                      "demo.scale=0.02", "download.timeout_s=1"],
    }
    try:
        assert local.run("local", parameters, port, keep_server=True) == 0
        assert healthy(port)  # --keep-server: the server stays up for the UI
    finally:
        local.main(["stop", "--port", str(port)])
    marker = json.loads((tmp_path / "root" / "_stages" / "download.json").read_text())
    assert sum(s["downloaded"] for s in marker["summary"].values()) > 0
    assert not healthy(port)
