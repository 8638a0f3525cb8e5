"""Rendering hostile PDFs in a child process with a time and a memory limit per page.

pdfium parses and draws whatever a file says: a page of recursive forms can draw for hours, an
image can ask for gigabytes. So the worker never calls it: a child process (a fresh interpreter,
so no Ray or fsspec state is inherited, talking over two pipes) holds the open document, its
address space capped with ``RLIMIT_AS``, and answers one request at a time. The worker waits for
each page at most ``page_timeout_s``; past that it kills the child (``render_timeout``), and a
child that runs out of memory or dies (``render_memory``) is replaced the same way. The rest of
that PDF is given up (``render_abandoned``), the next PDF gets a fresh child, and the worker goes on.

>>> with Renderer(settings) as renderer:  # doctest: +SKIP
...     pages, reason = renderer.open(pdf_bytes)          # (page count, None) or (0, "encrypted")
...     page, reason = renderer.page(0)                   # (PageData, None) or (None, "render_timeout")
"""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

from .page import PageData
from .settings import PdfSettings

# What the child says when a document does not open: pdfium's error code -> the drop reason.
OPEN_ERRORS = {"FPDF_ERR_PASSWORD": "encrypted", "FPDF_ERR_SECURITY": "encrypted"}
OPEN_TIMEOUT_S = 30.0  # opening parses the trailer and xref only; a file that takes longer is hostile
_CHILD = "import sys; from pdf.sandbox import _child; _child(*map(int, sys.argv[1:]))"


class _Pipes:
    """One end of the two pipes between worker and child, used as one connection."""

    def __init__(self, read_fd: int, write_fd: int):
        self.incoming = Connection(read_fd, writable=False)
        self.outgoing = Connection(write_fd, readable=False)

    def send(self, value: Any) -> None:
        self.outgoing.send(value)

    def recv(self) -> Any:
        return self.incoming.recv()

    def poll(self, timeout: float) -> bool:
        return self.incoming.poll(timeout)

    def close(self) -> None:
        self.incoming.close()
        self.outgoing.close()


def _child(read_fd: int, write_fd: int, memory_mb: int) -> None:  # pragma: no cover - the child process
    import resource

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn = _Pipes(read_fd, write_fd)
    import pypdfium2
    import pypdfium2.raw as raw

    from .page import read_page

    codes = {getattr(raw, name): name for name in dir(raw) if name.startswith("FPDF_ERR_")}
    document = None
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        op = request[0]
        try:
            if op == "open":
                if document is not None:
                    document.close()
                    document = None
                try:
                    document = pypdfium2.PdfDocument(request[1])
                except pypdfium2.PdfiumError as err:
                    name = codes.get(getattr(err, "err_code", None), "FPDF_ERR_UNKNOWN")
                    conn.send(("error", OPEN_ERRORS.get(name, "corrupt"), f"{name}: {err}"))
                    continue
                conn.send(("ok", len(document)))
            elif op == "page":
                conn.send(("ok", read_page(document, *request[1:])))
            else:
                return
        except MemoryError as err:
            conn.send(("error", "render_memory", repr(err)))
        except Exception as err:  # pdfium's own errors on a broken page: the page is unreadable
            message = repr(err)
            conn.send(("error", "render_memory" if "alloc" in message.lower() else "render_error", message))


class Renderer:
    """A rendering child with limits (see the module docstring); restarted after it is killed."""

    def __init__(self, settings: PdfSettings):
        self.settings = settings
        self._process: subprocess.Popen | None = None
        self._conn: _Pipes | None = None
        self.last_error = ""

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        child_reads, worker_writes = os.pipe()
        worker_reads, child_writes = os.pipe()
        # One math thread: OpenBLAS reserves memory per thread, which RLIMIT_AS would count.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(child_reads), str(child_writes), str(self.settings.memory_mb)],
                pass_fds=(child_reads, child_writes), env=env, stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(worker_reads)
            os.close(worker_writes)
            raise
        finally:
            os.close(child_reads)
            os.close(child_writes)
        self._conn = _Pipes(worker_reads, worker_writes)

    def close(self) -> None:
        """Stop the child (politely, then by force)."""
        if self._process is None:
            return
        try:
            self._conn.send(("quit",))
        except (OSError, ValueError):
            pass
        try:
            self._process.wait(2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._conn.close()
        self._process = self._conn = None

    def _kill(self) -> None:
        self._process.kill()
        self._process.wait()
        self._conn.close()
        self._process = self._conn = None

    def _ask(self, request: tuple, timeout: float) -> tuple[Any, str | None]:
        if self._process is None:
            self._start()
        try:
            self._conn.send(request)
            answer = self._conn.recv() if self._conn.poll(timeout) else None
        except (EOFError, OSError):  # the child died: out of memory, or pdfium crashed
            self.last_error = f"the rendering process died (exit code {self._process.poll()})"
            self._kill()
            return None, "render_memory"
        if answer is None:
            self.last_error = f"no answer in {timeout:g} s"
            self._kill()
            return None, "render_timeout"
        if answer[0] == "error":
            self.last_error = answer[2]
            return None, answer[1]
        return answer[1], None

    def open(self, data: bytes) -> tuple[int, str | None]:
        """Open a PDF in the child: (page count, None), or (0, reason): ``encrypted``, ``corrupt``..."""
        pages, reason = self._ask(("open", data), OPEN_TIMEOUT_S)
        return (pages or 0), reason

    def page(self, index: int) -> tuple[PageData | None, str | None]:
        """Page ``index`` of the open PDF, rendered and read: (PageData, None) or (None, reason)."""
        s = self.settings
        return self._ask(("page", index, s.dpi, s.max_side, s.image_format, s.jpeg_quality), s.page_timeout_s)
