"""Serve the demo collections over loopback HTTP, broken URLs included, and write their URL lists.

>>> from flows.demo import DemoServer, generate, write_url_lists
>>> directory = generate("/tmp/demo", seed=0, scale=0.05)  # doctest: +SKIP
>>> with DemoServer(directory) as server:  # doctest: +SKIP
...     write_url_lists(directory, server.base_url)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.demo.generate import BAD_KINDS

log = logging.getLogger(__name__)


class _Handler(SimpleHTTPRequestHandler):
    server: _DemoHTTPServer

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        parts = self.path.lstrip("/").split("/", 2)
        if parts[0] != "bad" or len(parts) < 3:
            return super().do_GET()
        kind, relative = parts[1], parts[2]
        image = self.server.root / relative
        if kind == "missing":
            self.send_error(HTTPStatus.NOT_FOUND)
        elif kind == "hang":
            self.server.stopping.wait(self.server.hang_s)  # longer than any client timeout
            self._reply(b"late", "text/plain")
        elif kind == "html":
            self._reply(b"<html><body>This page moved.</body></html>", "text/html")
        elif kind == "truncated":
            body = image.read_bytes()
            self._reply(body[: len(body) * 6 // 10], "image/jpeg")
        elif kind == "oversized":
            self._stream_oversized()
        elif kind == "bomb":
            self._reply((self.server.root / "bad" / "bomb.png").read_bytes(), "image/png")
        elif kind == "flaky":
            with self.server.lock:
                first = relative not in self.server.flaky_seen
                self.server.flaky_seen.add(relative)
            if first:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
            else:
                self._reply(image.read_bytes(), "image/jpeg")
        else:
            self.send_error(HTTPStatus.BAD_REQUEST, f"unknown kind {kind}")

    def _reply(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left, as the "hang" URLs intend

    def _stream_oversized(self) -> None:
        # No Content-Length: the client only learns the size by reading, as with chunked bodies.
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\xff\xd8\xff\xe0" + b"\0" * (2**20 - 4)
        try:
            for _ in range(self.server.oversized_mib):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up once it had read enough: that is the point
        self.close_connection = True


class _DemoHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # the default backlog of 5 refuses connections under img2dataset's threads

    def __init__(self, address, root: Path, hang_s: float, oversized_mib: int):
        self.root = root
        self.hang_s = hang_s
        self.oversized_mib = oversized_mib
        self.flaky_seen: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(address, lambda *args: _Handler(*args, directory=str(root)))


class DemoServer:
    """A threaded HTTP server on 127.0.0.1 for a generated demo directory; a context manager."""

    def __init__(self, directory: str | Path, port: int = 0, hang_s: float = 30.0, oversized_mib: int = 64):
        try:
            self._server = _DemoHTTPServer(("127.0.0.1", port), Path(directory), hang_s, oversized_mib)
        except OSError as err:  # the fixed port is taken (another demo, another program): any free one
            if port == 0:
                raise
            log.warning("demo port %d is in use (%s): serving on a free port instead; the URLs, and so the "
                        "shards' meta.url, differ from a run on port %d", port, err.strerror, port)
            self._server = _DemoHTTPServer(("127.0.0.1", 0), Path(directory), hang_s, oversized_mib)
        self._thread = threading.Thread(target=self._server.serve_forever, name="vlmix-demo-http", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DemoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def write_url_lists(directory: str | Path, base_url: str) -> dict[str, Path]:
    """Write ``urls/<collection>.parquet`` for every generated collection, pointing at ``base_url``.

    The URL list has LAION's columns (url, caption, punsafe, pwatermark, WIDTH, HEIGHT, LANGUAGE)
    plus ``objects`` (detection boxes) and ``expect`` (what the download should do with the row).
    """
    directory = Path(directory)
    (directory / "urls").mkdir(exist_ok=True)
    written = {}
    for items_path in sorted((directory / "items").glob("*.parquet")):
        items = pq.read_table(items_path)
        good = pc.binary_join_element_wise(base_url + "/", items["path"], "")
        bad = pc.binary_join_element_wise(base_url + "/bad/", items["bad"], "/", items["path"], "")
        urls = pc.if_else(pc.equal(items["bad"], ""), good, bad)
        expect = [BAD_KINDS[kind] if kind else "ok" for kind in items["bad"].to_pylist()]
        table = pa.table({
            "url": urls,
            "caption": items["caption"],
            "punsafe": items["punsafe"],
            "pwatermark": items["pwatermark"],
            "WIDTH": items["width"],
            "HEIGHT": items["height"],
            "LANGUAGE": items["language"],
            "objects": items["objects"],
            "expect": pa.array(expect),
        })
        target = directory / "urls" / items_path.name
        temporary = target.with_suffix(".parquet.tmp")
        pq.write_table(table, temporary)
        temporary.replace(target)
        written[items_path.stem] = target
    return written


def wait_until_serving(base_url: str, timeout_s: float = 10.0) -> None:
    """Block until the server answers (used by the CLI when it serves in the foreground)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(base_url + "/items/_GENERATED.json", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def serving(directory: str | Path, seed: int = 0, scale: float = 1.0, bad_url_share: float = 0.06,
            port: int = 0) -> Iterator[DemoServer]:
    """Generate the demo sources (if needed), serve them on loopback and write their URL lists."""
    from flows.demo.generate import generate

    generate(directory, seed=seed, scale=scale, bad_url_share=bad_url_share)
    with DemoServer(directory, port=port) as server:
        write_url_lists(directory, server.base_url)
        yield server
