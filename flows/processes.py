"""The processes one launcher run started, found and stopped, whatever became of their parents.

The launcher gives the worker it starts a tag in its environment (``VLMIX_RUN_TAG=<id>``). Every
process started below it inherits that environment: the flow run the worker starts in a session
of its own, the local Ray it starts (GCS, raylet, workers, OCR actors), the vLLM servers those
start in sessions of their own. When a run ends or fails, :func:`stop_tagged` stops every process
whose environment carries the tag, so none of them is left behind even after its parent died.
Linux (``/proc``) only, like the demo.

A killed launcher cannot clean up after itself: :func:`start_guardian` starts a small process of its
own (``python -m flows.processes guard PID TAG``, untagged, in a session of its own) that waits for
the launcher to end, however it ends, and then stops every process of the tag, within seconds.

The launcher also adopts the orphans of the processes below it (:func:`become_subreaper`), and at the
end of a run stops whatever is still below it (:func:`stop_below`), tagged or not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TAG_ENV = "VLMIX_RUN_TAG"


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return b""


def state(pid: int) -> str | None:
    """The process's state letter (``R``, ``S``, ``Z`` ...), None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return state(pid) not in (None, "Z")


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def environment_value(pid: int, name: str) -> str | None:
    prefix = name.encode() + b"="
    for item in _environ(pid).split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def tagged(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment has ``name=value`` (never this process)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if needle in _environ(pid).split(b"\0") and alive(pid):
            found.append(pid)
    return found


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    return children


def _with_descendants(pids: list[int]) -> list[int]:
    """``pids`` and every live process below them: a child whose environment cannot be read as
    started (a process that rewrote its memory for its title) still goes with its parent."""
    children = _children()
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in found or pid == os.getpid():
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return sorted(pid for pid in found if alive(pid))


def below_this_process(keep: set[int] = frozenset()) -> list[int]:
    """The live processes below this one, but those in ``keep`` and everything below them."""
    children = _children()
    return _with_descendants([pid for pid in children.get(os.getpid(), ()) if pid not in keep]) if children else []


def become_subreaper() -> bool:
    """Make this process adopt the orphans of the processes below it (Linux ``PR_SET_CHILD_SUBREAPER``).

    A Ray node's agents outlive their raylet for a while when it is stopped mid-start; without this
    they would be re-parented to init and no longer found below the launcher that started the run.
    """
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_tagged(value: str, grace_s: float = 15.0, name: str = TAG_ENV) -> list[str]:
    """SIGTERM every process tagged ``name=value``, SIGKILL those left after ``grace_s``.

    Returns the command lines of the processes that were still running (for the launcher's log).
    """
    return _stop(lambda: _with_descendants(tagged(name, value)), grace_s)


def stop_below(keep: set[int] = frozenset(), grace_s: float = 5.0) -> list[str]:
    """Like :func:`stop_tagged`, for every process below this one (but ``keep`` and what is below it),
    tagged or not: with :func:`become_subreaper`, also the orphans of those that ended."""
    return _stop(lambda: below_this_process(keep), grace_s)


def _stop(find, grace_s: float) -> list[str]:
    pids = find()
    if not pids:
        return []
    stopped = [f"{pid} {command_line(pid)[:120]}" for pid in pids]
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        pids = [pid for pid in pids if alive(pid)]
        if not pids:
            break
        time.sleep(0.25)
    for _ in range(20):  # SIGKILL what is left, also what the dying ones started meanwhile
        pids = [pid for pid in sorted(set(pids) | set(find())) if alive(pid)]
        if not pids:
            break
        _signal(pids, signal.SIGKILL)
        time.sleep(0.25)
    return stopped


def stop_group(pid: int, grace_s: float = 20.0, first: int = signal.SIGTERM) -> None:
    """Signal the process group led by ``pid`` (``first``, then SIGKILL after ``grace_s``); the
    process alone when it leads no group."""
    try:
        leader = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    send = os.killpg if leader else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(pid, first)
    deadline = time.monotonic() + grace_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if leader or alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signal.SIGKILL)  # for a group, also what its leader left behind


def start_guardian(parent: int, tag: str, name: str = TAG_ENV) -> subprocess.Popen:
    """A process that stops everything tagged ``name=tag`` once ``parent`` is gone (see :func:`guard`)."""
    env = {key: value for key, value in os.environ.items() if key != name}
    return subprocess.Popen([sys.executable, "-m", "flows.processes", "guard", str(parent), tag, name], env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def guard(parent: int, tag: str, name: str = TAG_ENV, poll_s: float = 0.5, grace_s: float = 3.0) -> None:
    """Wait until ``parent`` has ended, then stop every process tagged ``name=tag``."""
    while alive(parent):
        time.sleep(poll_s)
    left = stop_tagged(tag, grace_s=grace_s, name=name)
    if left:
        print(f"vlmix: the run's launcher (pid {parent}) is gone; stopped what it had started: "
              + "; ".join(left), file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "guard":
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the launcher's end, or SIGTERM, ends a guardian
        guard(int(sys.argv[2]), sys.argv[3], *sys.argv[4:5])
    else:
        sys.exit("usage: python -m flows.processes guard PID TAG [ENV_NAME]")
