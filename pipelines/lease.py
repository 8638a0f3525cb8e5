"""One run per storage root at a time: a lease object at ``<root>/_run/lease.json``.

Two runs writing into one root would each trust the other's completion markers (a stage skipped as
"unchanged" on what the other half wrote) and overwrite each other's outputs. A run therefore
takes the root's lease before it starts and gives it back when it ends:

- the lease names its holder: run id, host, pid, when it started, and a heartbeat the holder
  renews every ``heartbeat_s`` seconds (a thread);
- a second run finds it and is refused with :class:`LeaseHeld`, whose message names the holder;
- a lease whose holder is gone is **stale** and taken over, with a notice: its heartbeat is older
  than ``stale_after_s``, or its holder ran on this host and that process no longer exists (a
  killed run is taken over at once on the machine it ran on).

The lease is created with an exclusive write (``open(..., "xb")``: ``O_EXCL`` on local disk, a
conditional ``If-None-Match`` put on S3), so of two runs starting together one gets it. Taking over a
stale lease is arbitrated the same way: a taker first creates ``_run/takeover-<holder>`` (named by the
stale lease's run id and heartbeat) exclusively, and only the run that created it removes the stale
lease and creates its own; a run that finds that marker re-reads the lease. So two runs that find one
stale lease together never both believe they hold the root. A marker left by a taker killed
mid-takeover is itself stale after ``stale_after_s`` and removed.

>>> with Lease(Storage("s3://bucket/run")) as lease:  # doctest: +SKIP
...     run_the_stages()
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from pipelines.storage import Storage

log = logging.getLogger(__name__)

LEASE = "_run/lease.json"


class LeaseHeld(RuntimeError):
    """Another run holds the storage root's lease."""


@dataclass
class Holder:
    run_id: str
    host: str
    pid: int
    started: float
    heartbeat: float

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return (f"run {self.run_id} (host {self.host}, pid {self.pid}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}, "
                f"last heartbeat {now - self.heartbeat:.0f} s ago)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """The lease of ``storage``'s root for one run (see the module docstring)."""

    def __init__(self, storage: Storage, run_id: str | None = None, heartbeat_s: float = 10.0,
                 stale_after_s: float = 60.0):
        if stale_after_s <= heartbeat_s:
            raise ValueError(f"stale_after_s ({stale_after_s}) must be longer than heartbeat_s ({heartbeat_s})")
        self.storage, self.path = storage, storage.path(LEASE)
        self.holder = Holder(run_id or uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), time.time(), 0.0)
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.notice: str | None = None  # set when a stale lease was taken over

    # -- the lease object -------------------------------------------------------------------------
    def read(self) -> Holder | None:
        try:
            with self.storage.fs.open(self.path, "rb") as f:
                return Holder(**json.loads(f.read()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # half written by a killed run, or foreign: treat as stale
            return Holder("unknown", "unknown", -1, 0.0, 0.0)

    def _data(self) -> bytes:
        self.holder.heartbeat = time.time()
        return json.dumps(asdict(self.holder), sort_keys=True).encode()

    def _create(self) -> bool:
        self.storage.makedirs(self.path.rsplit("/", 1)[0])
        try:
            with self.storage.fs.open(self.path, "xb") as f:
                f.write(self._data())
        except FileExistsError:
            return False
        return True

    def _marker(self, holder: Holder) -> str:
        return self.storage.path(f"_run/takeover-{holder.run_id}-{holder.heartbeat:.6f}")

    def _claim(self, stale: Holder) -> bool:
        """Win the right to replace ``stale`` (an exclusive create); False when another run has it."""
        marker = self._marker(stale)
        try:
            with self.storage.fs.open(marker, "xb") as f:
                f.write(self._data())
        except FileExistsError:
            try:  # a taker killed mid-takeover leaves its marker: old markers are stale themselves
                with self.storage.fs.open(marker, "rb") as f:
                    taker = Holder(**json.loads(f.read()))
                if time.time() - taker.heartbeat > self.stale_after_s:
                    self.storage.fs.rm_file(marker)
            except (FileNotFoundError, ValueError, TypeError):
                pass
            return False
        if self.read() != stale:  # a taker that came before finished meanwhile: its lease is not stale
            self._unclaim(stale)
            return False
        return True

    def _unclaim(self, stale: Holder) -> None:
        try:
            self.storage.fs.rm_file(self._marker(stale))
        except FileNotFoundError:
            pass

    def stale(self, holder: Holder, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if now - holder.heartbeat > self.stale_after_s:
            return True
        return holder.host == self.holder.host and holder.pid != os.getpid() and not _pid_alive(holder.pid)

    # -- taking and giving back -------------------------------------------------------------------
    def acquire(self) -> Lease:
        """Take the lease, or raise :class:`LeaseHeld` naming the run that has it."""
        root = self.storage.root_uri()
        for _ in range(20):
            if self._create():
                break
            current = self.read()
            if current is None:
                continue  # given back meanwhile
            if not self.stale(current):
                raise LeaseHeld(
                    f"storage root {root} is in use by {current.describe()}: one run per storage root at a time. "
                    f"Wait for it to end or stop it; a lease with no heartbeat for {self.stale_after_s:.0f} s "
                    f"(or whose process on this host is gone) is taken over. Lease: {self.storage.uri(self.path)}")
            if not self._claim(current):
                time.sleep(0.2)  # another run is taking this stale lease over: see what it leaves
                continue
            self.notice = (f"took over the lease of storage root {root} from {current.describe()}: "
                           "that run is gone; its completed units are kept and this run resumes them")
            log.warning(self.notice)
            try:
                self.storage.fs.rm_file(self.path)
                created = self._create()
            finally:
                self._unclaim(current)
            if created:
                break
        else:
            raise LeaseHeld(f"storage root {root}: could not take its lease {self.storage.uri(self.path)}")
        mine = self.read()
        if mine is None or mine.run_id != self.holder.run_id:  # another run took it over at the same time
            raise LeaseHeld(f"storage root {root} is in use by {mine.describe() if mine else 'another run'}")
        self._thread = threading.Thread(target=self._beat, name="vlmix-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                current = self.read()
                if current is None or current.run_id != self.holder.run_id:
                    log.error("the lease of %s is no longer this run's (%s)", self.storage.root_uri(),
                              current.describe() if current else "removed")
                    return
                with self.storage.fs.open(self.path, "wb") as f:
                    f.write(self._data())
            except OSError as err:  # the store is unreachable for a moment: the next beat tries again
                log.warning("could not renew the lease of %s: %s", self.storage.root_uri(), err)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        current = self.read()
        if current is not None and current.run_id == self.holder.run_id:
            self.storage.fs.rm_file(self.path)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
