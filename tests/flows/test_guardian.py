"""After a SIGKILL of the launcher, nothing it started outlives it for more than a few seconds: its
guardian stops every process of the run's tag, also those in sessions of their own (as Ray's and
Prefect's are). And the launcher adopts the orphans of what it started, so that a child left by a
dead parent is stopped at the end of the run, tagged or not."""

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


ORPHANING = """
import json, os, subprocess, sys, time
from flows import processes
adopted = processes.become_subreaper()
keep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # like the server kept for the UI
# A parent that starts a child untagged, in a session of its own, ignoring SIGTERM, and dies at once
# (like a raylet stopped while its agents still start): the child is orphaned.
parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; print(subprocess.Popen([sys.executable, "
                           "'-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                           "time.sleep(300)'], start_new_session=True).pid)"], stdout=subprocess.PIPE, text=True)
orphan = int(parent.stdout.readline())
parent.wait()
found = processes.below_this_process(keep={keep.pid})
stopped = processes.stop_below(keep={keep.pid}, grace_s=1)
time.sleep(0.5)
print(json.dumps({"adopted": adopted, "orphan": orphan, "found": found, "stopped": len(stopped),
                  "orphan_alive": processes.alive(orphan), "kept_alive": processes.alive(keep.pid)}))
keep.kill()
"""


def test_the_launcher_adopts_and_stops_the_orphans_of_what_it_started():
    import json

    done = subprocess.run([sys.executable, "-c", ORPHANING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["adopted"]  # Linux: PR_SET_CHILD_SUBREAPER
    assert result["found"] == [result["orphan"]]  # found below the launcher though its parent is gone
    assert result["stopped"] == 1 and not result["orphan_alive"]  # SIGTERM ignored: SIGKILL after the grace
    assert result["kept_alive"]
