"""After a SIGKILL of the launcher, nothing it started outlives it for more than a few seconds: its
guardian stops every process of the run's tag, also those in sessions of their own (as Ray's and
Prefect's are)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from flows.processes import TAG_ENV, alive, tagged

LAUNCHER = """
import os, subprocess, sys, time
from flows.processes import TAG_ENV, start_guardian
tag = sys.argv[1]
start_guardian(os.getpid(), tag)
env = {**os.environ, TAG_ENV: tag}
for _ in range(2):  # like the Prefect server and a raylet: own sessions, ignoring SIGTERM for a while
    subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "time.sleep(300)"], env=env, start_new_session=True)
print("started", flush=True)
time.sleep(300)
"""


def test_a_killed_launchers_processes_are_stopped_within_seconds():
    tag = uuid.uuid4().hex[:12]
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, tag], stdout=subprocess.PIPE, text=True)
    assert launcher.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 10
    while len(tagged(TAG_ENV, tag)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    children = tagged(TAG_ENV, tag)
    assert len(children) == 2
    launcher.kill()
    launcher.wait()
    killed_at = time.monotonic()
    while any(alive(pid) for pid in children) and time.monotonic() - killed_at < 10:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in children)
    assert time.monotonic() - killed_at < 8  # a poll of 0.5 s, 3 s of grace, then SIGKILL
    assert tagged(TAG_ENV, tag) == []
