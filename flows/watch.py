"""Following one flow run from the launcher: progress in the terminal, and an honest ending.

The flow and its stages write their events and progress lines to a local file
(``$VLMIX_PROGRESS_FILE``, see :mod:`pipelines.progress`); :class:`RunWatch` prints them as they
come, polls the flow run's state through the server's REST API (short timeouts, no retries of its
own), and watches the server and the worker processes. It ends with an :class:`Outcome`: completed,
or failed with the stage that failed and its error, also when the server or the worker died.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class ApiError(RuntimeError):
    """The server answered with an error, or not at all."""


def api(base_url: str, method: str, path: str, body: Any = None, timeout_s: float = 10.0) -> Any:
    """One request to the Prefect REST API; the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base_url}/api{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            text = response.read()
    except urllib.error.HTTPError as err:
        raise ApiError(f"{method} {path}: HTTP {err.code} {err.read()[:300]!r}") from err
    except OSError as err:
        raise ApiError(f"{method} {path}: {err}") from err
    return json.loads(text) if text else None


def create_flow_run(base_url: str, flow: str, deployment: str, parameters: dict[str, Any],
                    attempts: int = 5) -> dict[str, Any]:
    """A flow run of ``flow/deployment`` with ``parameters`` (the server merges the deployment's)."""
    for attempt in range(attempts):
        try:
            found = api(base_url, "GET", f"/deployments/name/{flow}/{deployment}")
            return api(base_url, "POST", f"/deployments/{found['id']}/create_flow_run",
                       {"parameters": parameters}, timeout_s=30)
        except ApiError:
            if attempt == attempts - 1:
                raise
            time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")


def cancel_flow_run(base_url: str, flow_run_id: str, message: str) -> None:
    """Best effort: mark the run cancelled so the UI does not show it running forever."""
    try:
        api(base_url, "POST", f"/flow_runs/{flow_run_id}/set_state",
            {"state": {"type": "CANCELLED", "name": "Cancelled", "message": message}, "force": True},
            timeout_s=5)
    except ApiError:
        pass


@dataclass
class Outcome:
    completed: bool
    state: str = ""
    message: str = ""
    failed_stage: str | None = None
    error: str | None = None
    log_to_show: Path | None = None  # the log whose last lines explain the failure
    stages: dict[str, str] = field(default_factory=dict)  # stage -> last status


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class RunWatch:
    """Prints a run's progress file as it grows and decides how the run ended."""

    def __init__(self, progress_file: Path, say: Callable[[str], None]):
        self.path = progress_file
        self.say = say
        self.offset = 0
        self.started = time.monotonic()
        self.started_at = time.time()  # events carry wall-clock times
        self.stages: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.running: str | None = None
        self._starting: tuple[str, float] | None = None  # a start not shown yet

    def pump(self) -> None:
        """Print the lines written since the last call."""
        try:
            with open(self.path, encoding="utf-8") as source:
                source.seek(self.offset)
                chunk = source.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind("\n") + 1]  # a line being written waits for the next call
        self.offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._show(event)
        if self._starting and time.time() - self._starting[1] > 2:
            self._flush_start()

    def _flush_start(self) -> None:
        """A stage's start is shown once it is more than a skip (the next event, or 2 s on)."""
        if self._starting:
            stage, at = self._starting
            self._starting = None
            self.say(f"[{_duration(at - self.started_at):>9}] stage {stage}: started")

    def _show(self, event: dict[str, Any]) -> None:
        at = event.get("t") or time.time()
        stamp = f"[{_duration(at - self.started_at):>9}]"
        stage, status = event.get("stage", "?"), event.get("status", "?")
        if status != "skipped":
            self._flush_start()
        if event.get("kind") == "progress":
            self.say(f"{stamp}   {event.get('text', '')}")
            return
        self.stages[stage] = status
        if status == "started":
            self.running = stage
            self._starting = (stage, at)
        elif status == "completed":
            self.running = None
            self.say(f"{stamp} stage {stage}: done in {_duration(event.get('seconds') or 0)}")
        elif status == "skipped":
            self.running, self._starting = None, None
            self.say(f"{stamp} stage {stage}: skipped (unchanged since its last run)")
        elif status == "retrying":
            self.say(f"{stamp} stage {stage}: retrying after a transient error: {event.get('error')}")
        elif status == "failed":
            self.errors[stage] = event.get("error") or ""
            self.say(f"{stamp} stage {stage}: FAILED: {event.get('error')}")

    def follow(self, base_url: str, flow_run_id: str, server, worker, worker_log: Path,
               poll_s: float = 3.0, unresponsive_s: float = 600.0) -> Outcome:
        """Until the flow run is final, or the server or the worker is gone."""
        last_poll, last_answer, warned, pending_said = 0.0, time.monotonic(), False, False
        worker_gone_at = None
        while True:
            self.pump()
            now = time.monotonic()
            if not server.running():
                self.pump()
                return self._failed(f"the Prefect server {server.exit_status()}", server.log)
            if now - last_poll >= poll_s:
                last_poll = now
                try:
                    run = api(base_url, "GET", f"/flow_runs/{flow_run_id}", timeout_s=10)
                except ApiError:
                    run = None
                if run is not None:
                    last_answer, warned = now, False
                    state = run.get("state") or {}
                    kind = state.get("type", "")
                    if kind in FINAL:
                        time.sleep(0.5)
                        self.pump()
                        if kind == "COMPLETED":
                            return Outcome(True, kind, stages=dict(self.stages))
                        return self._failed(state.get("message") or state.get("name", kind), worker_log, kind)
                    if kind in ("SCHEDULED", "PENDING") and not pending_said and now - self.started > 20:
                        pending_said = True
                        self.say(f"waiting for the worker to start flow run {run.get('name')} ...")
                elif now - last_answer > 60 and not warned:
                    warned = True
                    self.say(f"the Prefect server on {base_url} has not answered for {now - last_answer:.0f} s; "
                             "still waiting")
                elif now - last_answer > unresponsive_s:
                    return self._failed(f"the Prefect server on {base_url} stopped answering", server.log)
            if worker.poll() is not None:
                worker_gone_at = worker_gone_at or now
                if now - worker_gone_at > 2 * poll_s + 1:  # one more look at the state first
                    return self._failed(f"the Prefect worker exited with code {worker.returncode}", worker_log)
            time.sleep(0.5)

    def _failed(self, reason: str, log: Path | None, state: str = "FAILED") -> Outcome:
        """The stage that failed (else the one running) and its error (else ``reason``)."""
        stage = next(reversed(self.errors), None) or self.running
        error = self.errors.get(stage, reason) if stage else reason
        return Outcome(False, state, reason, stage, error, log, dict(self.stages))
