"""``vlmix run`` as a batch job: one run per storage root, stopped cleanly when told, nothing left behind.

``vlmix run`` is a small supervisor that never imports Ray or Prefect. It

1. takes the storage root's lease (:mod:`pipelines.lease`): a second run on the root is refused,
   naming the one that holds it; a lease left by a killed run is taken over, with a notice;
2. starts a **guardian** (:func:`flows.processes.guard`), a process of its own that waits for the
   supervisor to end, however it ends, SIGKILL included, and then stops every process of the run;
3. runs the flow in a child process (``python -m flows.cli run ...`` with ``VLMIX_RUN_CHILD=1``)
   whose environment carries the run's tag (``VLMIX_RUN_TAG``): the Prefect server the flow starts,
   Ray's processes and actors, vLLM engines all inherit it, so all of them can be found and stopped;
4. on SIGTERM (what Slurm, Kubernetes and ``timeout`` send) or SIGINT (Ctrl-C): interrupts the flow
   (SIGINT to the child, which stops its stage), waits at most ``GRACE_S``, then stops whatever is
   left of the run (SIGTERM, then SIGKILL), gives the lease back and exits 143 (SIGTERM) or 130
   (SIGINT) with one line naming the stage it stopped in.

Like the launcher (:mod:`flows.local`), the supervisor adopts the orphans of what runs below it
(:func:`flows.processes.become_subreaper`): a Ray node's agents whose raylet was stopped first end
up below it, not with init, and the last sweep (:func:`flows.processes.stop_below`) stops them too.

Units a stage completed are on storage; a rerun of the same command skips them and resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from flows import processes
from pipelines.lease import Lease, LeaseHeld
from pipelines.storage import Storage

CHILD_ENV = "VLMIX_RUN_CHILD"
GRACE_S = float(os.environ.get("VLMIX_STOP_GRACE_S", "20"))  # for the flow to stop its stage by itself
KILL_GRACE_S = 5.0  # then SIGTERM to every process of the run, SIGKILL after this


def in_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def current_stage(progress_file: Path) -> tuple[str | None, str]:
    """The stage the run was in, from its progress events, and how far it got ("3/10 units")."""
    stage, where = None, ""
    try:
        lines = progress_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None, ""
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("kind") == "stage":
            if event.get("status") in ("started", "retrying"):
                stage, where = event.get("stage"), ""
            elif event.get("stage") == stage:
                stage, where = None, ""
        elif event.get("kind") == "progress" and stage and event.get("total"):
            where = f"{event['done']}/{event['total']} {event.get('unit') or 'units'} of {event['stage']}"
    return stage, where


def supervise(argv: list[str], root: str, options: dict) -> int:
    """Run ``vlmix <argv>`` (a ``run`` command) in a child process under the root's lease; see the module."""
    tag = uuid.uuid4().hex[:12]
    try:
        lease = Lease(Storage(root, options), run_id=tag).acquire()
    except LeaseHeld as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if lease.notice:
        print(f"notice: {lease.notice}", file=sys.stderr, flush=True)
    stop = {"signal": None}

    def _stop(signum, _frame):
        stop["signal"] = stop["signal"] or signum

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes.become_subreaper()  # what dies below the run leaves its orphans here, where the last sweep finds them
    work = Path(tempfile.mkdtemp(prefix=f"vlmix-run-{tag}-"))
    progress = Path(os.environ.get("VLMIX_PROGRESS_FILE") or work / "progress.jsonl")
    env = {**os.environ, CHILD_ENV: "1", processes.TAG_ENV: tag, "VLMIX_PROGRESS_FILE": str(progress)}
    guardian = processes.start_guardian(os.getpid(), tag)
    child = None
    try:
        if stop["signal"] is None:
            child = subprocess.Popen([sys.executable, "-m", "flows.cli", *argv], env=env, start_new_session=True)
        while child is not None and child.poll() is None and stop["signal"] is None:
            time.sleep(0.2)
        if stop["signal"] is None:
            return child.returncode if child.returncode >= 0 else 1
        signum = stop["signal"]
        stage, where = current_stage(progress)
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)  # the flow's own interrupt: its stage stops, Ray shuts down
            try:
                child.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        name = signal.Signals(signum).name
        place = f"during stage {stage}" + (f" ({where} done)" if where else "") if stage else "between stages"
        print(f"vlmix run: stopped by {name} {place}; completed units are kept, rerun the same command to resume",
              file=sys.stderr, flush=True)
        return 128 + signum
    finally:
        processes.stop_tagged(tag, grace_s=KILL_GRACE_S)  # whatever the flow left: its server, Ray, engines
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        processes.stop_below(keep={guardian.pid}, grace_s=KILL_GRACE_S)  # and any orphan of theirs, tagged or not
        lease.release()
        guardian.terminate()  # the run is stopped: nothing for it to do
        guardian.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not os.environ.get("VLMIX_PROGRESS_FILE"):
            progress.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            work.rmdir()
