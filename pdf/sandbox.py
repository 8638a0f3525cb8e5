"""Rendering hostile PDFs in a child process with a time and a memory limit per page.

pdfium parses and draws whatever a file says: a page of recursive forms can draw for hours, an
image can ask for gigabytes. So the worker never calls it: a child process (a fresh interpreter,
so no Ray or fsspec state is inherited, talking over two pipes) with its address space capped by
``RLIMIT_AS`` renders. One child serves a worker across pages, documents and units.

One round trip a document: the worker sends the PDF's bytes once; the child opens it, answers its
page count, then renders and reads the first ``max_pages`` pages one after the other, sending each
(a :class:`PageData`, the image already encoded) as soon as it is done, without waiting to be asked.
Sending a page waits until the worker takes it, so the child renders the next page while the worker
decides the last, and runs no further ahead. The worker waits for each page at most ``page_timeout_s``
after the one before arrived; past that it kills the child (``render_timeout``), and a child that
runs out of memory or dies is killed too (``render_memory``). The rest of that PDF is given up
(``render_abandoned``), the next PDF starts a fresh child, and the worker goes on.

>>> with Renderer(settings) as renderer:  # doctest: +SKIP
...     pages, reason = renderer.open(pdf_bytes)          # (page count, None) or (0, "encrypted")
...     for _ in range(min(pages, settings.max_pages)):
...         page, reason = renderer.next_page()           # (PageData, None) or (None, "render_timeout")
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] != "document":
            return
        _, data, max_pages, *options = request
        try:
            document = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as err:
            name = codes.get(getattr(err, "err_code", None), "FPDF_ERR_UNKNOWN")
            conn.send(("error", OPEN_ERRORS.get(name, "corrupt"), f"{name}: {err}"))
            continue
        except MemoryError as err:
            conn.send(("error", "render_memory", repr(err)))
            continue
        del data, request
        try:
            conn.send(("ok", len(document)))
            for index in range(min(len(document), max_pages)):
                try:
                    conn.send(("ok", read_page(document, index, *options)))
                except MemoryError as err:
                    conn.send(("error", "render_memory", repr(err)))
                    break  # the worker gives the rest of the document up
                except Exception as err:  # pdfium's own errors on a broken page: the page is unreadable
                    message = repr(err)
                    if "alloc" in message.lower():
                        conn.send(("error", "render_memory", message))
                        break
                    conn.send(("error", "render_error", message))
        finally:
            document.close()


class Renderer:
    """A rendering child with limits (see the module docstring); restarted after it is killed."""

    def __init__(self, settings: PdfSettings):
        self.settings = settings
        self._process: subprocess.Popen | None = None
        self._conn: _Pipes | None = None
        self.last_error = ""
        self._pending = 0  # pages of the open PDF the child will still send
        self._last = 0.0  # when its last answer arrived (monotonic)
        self._waited = 0.0

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
        """Stop the child (politely, then by force; at once while it still renders pages nobody takes)."""
        if self._process is None:
            return
        if self._pending:
            self._kill()
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
        self._pending = 0
        self._process.kill()
        self._process.wait()
        self._conn.close()
        self._process = self._conn = None

    def _receive(self, deadline: float) -> tuple[Any, str | None]:
        """The child's next answer, waiting until ``deadline`` (monotonic) at most; a child that died or
        did not answer in time is killed."""
        try:
            answer = self._conn.recv() if self._conn.poll(max(0.0, deadline - time.monotonic())) else None
        except (EOFError, OSError):  # the child died: out of memory, or pdfium crashed
            self.last_error = f"the rendering process died (exit code {self._process.poll()})"
            self._kill()
            return None, "render_memory"
        if answer is None:
            self.last_error = f"no answer in {self._waited:g} s"
            self._kill()
            return None, "render_timeout"
        if answer[0] == "error":
            self.last_error = answer[2]
            if answer[1] == "render_memory":  # a child that hit its limit is not trusted with the next PDF
                self._kill()
            return None, answer[1]
        return answer[1], None

    def open(self, data: bytes, max_pages: int | None = None) -> tuple[int, str | None]:
        """Send a PDF to the child: (page count, None), or (0, reason): ``encrypted``, ``corrupt``...
        The child then renders its first ``max_pages`` pages (``settings.max_pages`` by default), which
        :meth:`next_page` returns in order. Pages of the previous PDF not taken yet are given up."""
        s = self.settings
        if self._pending and self._process is not None:
            self._kill()  # it is still rendering the last PDF's pages: nobody will read them
        if self._process is None:
            self._start()
        self._pending = 0
        try:
            self._conn.send(("document", data, s.max_pages if max_pages is None else max_pages,
                             s.dpi, s.max_side, s.image_format, s.jpeg_quality))
        except OSError:
            self.last_error = f"the rendering process died (exit code {self._process.poll()})"
            self._kill()
            return 0, "render_memory"
        self._waited = OPEN_TIMEOUT_S
        pages, reason = self._receive(time.monotonic() + OPEN_TIMEOUT_S)
        if reason is None:
            self._pending = min(pages, s.max_pages if max_pages is None else max_pages)
        self._last = time.monotonic()
        return (pages or 0), reason

    def next_page(self) -> tuple[PageData | None, str | None]:
        """The next page of the open PDF, rendered and read: (PageData, None) or (None, reason). After
        ``render_timeout`` or ``render_memory`` the child is gone and the PDF's other pages with it."""
        if not self._pending or self._process is None:
            raise RuntimeError("next_page: no page left of the PDF sent with open()")
        # The child started this page when the last one left the pipe: no sooner than that arrived.
        self._waited = self.settings.page_timeout_s
        page, reason = self._receive(self._last + self.settings.page_timeout_s)
        self._last = time.monotonic()
        self._pending = self._pending - 1 if self._process is not None else 0
        return page, reason
