"""Time and concurrency limits of downloads: one URL's wall-clock budget, and slots per host.

A :class:`Budget` is one URL's deadline. Its sockets get timeouts that end no later than it, and a
watchdog thread (one per process) shuts them down when it passes, which also ends a read blocked
inside http.client (trickled headers, a redirect's body). :class:`HostSlots` caps the downloads
in flight to one host within a process.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

from download.messages import TOO_SLOW


class TooSlow(Exception):
    """The URL's wall-clock budget ran out."""


class Budget:
    """One URL's deadline; the sockets opened for it are shut down by the watchdog when it passes."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.sockets: list[socket.socket] = []
        self.done = False
        self._lock = threading.Lock()
        _watchdog().watch(self)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, per_operation: float) -> float:
        """A socket timeout that ends no later than the deadline; raises :class:`TooSlow` past it."""
        left = self.left()
        if left <= 0:
            raise TooSlow(f"{TOO_SLOW} (more than {self.seconds:g} s)")
        return min(per_operation, left)

    def adopt(self, sock: socket.socket) -> None:
        with self._lock:
            self.sockets.append(sock)
        if self.left() <= 0:
            self.expire()

    def bound_next_read(self, per_operation: float) -> None:
        if self.sockets:
            self.sockets[-1].settimeout(self.timeout(per_operation))

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            for sock in self.sockets:
                with contextlib.suppress(OSError):  # base method: on the fd, also under a TLS socket
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self.done = True


class _Watchdog(threading.Thread):
    """One daemon thread per process: expires budgets at their deadlines."""

    def __init__(self):
        super().__init__(name="vlmix-download-watchdog", daemon=True)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Budget]] = []
        self._order = itertools.count()

    def watch(self, budget: Budget) -> None:
        with self._cond:
            heapq.heappush(self._heap, (budget.deadline, next(self._order), budget))
            if self._heap[0][2] is budget:
                self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, budget = heapq.heappop(self._heap)
            if not budget.done:
                budget.expire()


@functools.cache
def _watchdog() -> _Watchdog:
    watchdog = _Watchdog()
    watchdog.start()
    return watchdog


class HostSlots:
    """At most ``limit`` downloads in flight to one host (``host:port``); idle hosts cost nothing."""

    def __init__(self, limit: int):
        self.limit = limit
        self._cond = threading.Condition()
        self._busy: Counter = Counter()

    @contextlib.contextmanager
    def hold(self, url: str, budget: Budget):
        host = (urlsplit(url).netloc.rpartition("@")[2] or url).lower()
        with self._cond:
            if not self._cond.wait_for(lambda: self._busy[host] < self.limit, timeout=max(0.0, budget.left())):
                raise TooSlow(f"{TOO_SLOW} (all {self.limit} connections to {host} busy for {budget.seconds:g} s)")
            self._busy[host] += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy[host] -= 1
                if not self._busy[host]:
                    del self._busy[host]
                self._cond.notify_all()


@functools.cache
def host_slots(limit: int) -> HostSlots:
    return HostSlots(limit)
