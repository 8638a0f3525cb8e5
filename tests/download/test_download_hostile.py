"""The download stage against servers that misbehave as real hosts do, on loopback.

Three servers of the test's own (one host each, ``127.0.0.1:<port>``): the main one serves good
JPEGs (plain, gzip-, deflate- and br-encoded, behind redirects, behind a 429 or 503 that asks to
wait) and bad answers (redirect loops, resets, endless bodies, a gzip bomb, an unknown encoding);
a trickling one sends bodies or headers a byte at a time; a polite one is slow and counts how many
requests it has in flight. The stage must keep every usable image, count every other URL under
its reason, stay within its time bound and keep to the per-host limit.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import io
import json
import socket
import struct
import tarfile
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows.config import validate_config

TRICKLE_INTERVAL_S = 0.5  # one byte per interval: under timeout_s, so only a wall-clock bound stops it
RETRY_AFTER_S = 10  # longer than the first pass, so the retry pass has to wait for it
ZEROS = bytes(2**20)  # the gzip bomb's input, allocated once (the bomb test measures the client's memory)


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64 + seed, 48), (seed * 37 % 256, seed * 91 % 256, 120)).save(out, "JPEG", quality=90)
    return out.getvalue()


try:
    import brotli
except ImportError:  # br bodies are decoded only where a decoder is installed
    brotli = None


@functools.cache
def _br_bomb() -> bytes:
    return brotli.compress(bytes(64 * 2**20), quality=1)


class Server(ThreadingHTTPServer):
    """A loopback server whose answers depend on the first path segment; it logs every request."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests: Counter = Counter()
        self.first_seen: dict[str, float] = {}
        self.in_flight = 0  # of the slow answers
        self.max_in_flight = 0
        self.bytes_sent: Counter = Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        kind, _, name = self.path.lstrip("/").partition("/")
        with self.server.lock:
            self.server.requests[self.path] += 1
            first = self.server.first_seen.setdefault(self.path, time.time())
        try:
            getattr(self, "serve_" + kind.replace("-", "_"))(name, first)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def reply(self, body: bytes, status: int = 200, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "image/jpeg", "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        with self.server.lock:
            self.server.bytes_sent[self.path] += len(body)

    def image(self, name: str) -> bytes:
        return jpeg(int(name.split(".")[0].split("-")[-1]))

    def serve_ok(self, name, first):
        self.reply(self.image(name))

    def serve_gzip(self, name, first):
        self.reply(gzip.compress(self.image(name)), headers={"Content-Encoding": "gzip"})

    def serve_gzip_cut(self, name, first):  # the gzip stream stops halfway
        body = gzip.compress(self.image(name))
        self.reply(body[: len(body) // 2], headers={"Content-Encoding": "gzip"})

    def serve_deflate(self, name, first):  # zlib-wrapped, as RFC 9110 says
        self.reply(zlib.compress(self.image(name)), headers={"Content-Encoding": "deflate"})

    def serve_deflate_raw(self, name, first):  # raw deflate, as some servers send it anyway
        packer = zlib.compressobj(wbits=-15)
        self.reply(packer.compress(self.image(name)) + packer.flush(), headers={"Content-Encoding": "deflate"})

    def serve_br(self, name, first):  # without brotli here the bytes do not matter: they are refused unread
        body = brotli.compress(self.image(name)) if brotli else b"\x8b" + self.image(name)
        self.reply(body, headers={"Content-Encoding": "br"})

    def serve_zstd(self, name, first):
        self.reply(b"(R\xb5/\xfd" + self.image(name), headers={"Content-Encoding": "zstd"})

    def serve_redirect(self, name, first):  # /redirect/<hops>/<name>: that many hops, then the image
        hops, _, rest = name.partition("/")
        target = f"/redirect/{int(hops) - 1}/{rest}" if int(hops) > 1 else f"/ok/{rest}"
        self.reply(b"", 302, {"Location": target})

    def serve_loop(self, name, first):
        self.reply(b"moved", 302, {"Location": f"/loop/{name}", "Content-Type": "text/plain"})

    def serve_reset(self, name, first):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.rfile.close()
        self.wfile.close()
        self.connection.close()  # with SO_LINGER 0: an RST, not a FIN
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()  # for http.server's own flush and close

    def serve_endless(self, name, first):  # no Content-Length, no end
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\xff\xd8\xff\xe0" + b"\0" * 65532
        while not self.server.stopping.is_set():
            self.wfile.write(chunk)
            with self.server.lock:
                self.server.bytes_sent[self.path] += len(chunk)
        self.close_connection = True

    def serve_bomb(self, name, first):  # an endless gzip stream of zeros: about 1000:1
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Connection", "close")
        self.end_headers()
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        while not self.server.stopping.is_set():
            data = packer.compress(ZEROS) + packer.flush(zlib.Z_SYNC_FLUSH)
            self.wfile.write(data)
            with self.server.lock:
                self.server.bytes_sent[self.path] += len(data)
        self.close_connection = True

    def serve_br_bomb(self, name, first):  # 64 MiB of zeros in a few KiB
        self.reply(_br_bomb(), headers={"Content-Encoding": "br"})

    def serve_rate_limited(self, name, first):  # 429 until RETRY_AFTER_S after the first request
        if time.time() < first + RETRY_AFTER_S - 0.5:
            self.reply(b"", 429, {"Retry-After": str(RETRY_AFTER_S), "Content-Type": "text/plain"})
        else:
            self.reply(self.image(name))

    def serve_unavailable(self, name, first):  # 503 with Retry-After as an HTTP date
        until = first + RETRY_AFTER_S
        if time.time() < until - 1.5:  # an HTTP date has whole seconds
            self.reply(b"", 503, {"Retry-After": email.utils.formatdate(until, usegmt=True), "Content-Type": "text/plain"})
        else:
            self.reply(self.image(name))

    def serve_rate_limited_long(self, name, first):
        self.reply(b"", 429, {"Retry-After": "3600", "Content-Type": "text/plain"})

    def serve_trickle(self, name, first):  # a valid image, one byte per interval
        body = self.image(name)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            if self.server.stopping.wait(TRICKLE_INTERVAL_S):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def serve_trickle_headers(self, name, first):  # the status line, then a header line per interval
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(10_000):
            if self.server.stopping.wait(TRICKLE_INTERVAL_S):
                return
            self.wfile.write(f"X-Padding-{i}: x\r\n".encode())
            self.wfile.flush()

    def serve_slow(self, name, first):
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        time.sleep(0.3)
        with self.server.lock:  # before the reply: the client frees its slot only once it has it
            self.server.in_flight -= 1
        self.reply(self.image(name))


def url_plan(main: str, trickle: str, polite: str) -> list[tuple[str, str]]:
    """(url, what the stage must make of it), in a fixed interleaved order."""
    plan = [(f"{main}/ok/a-{i}.jpg", "ok") for i in range(1, 4)]
    plan += [(f"{main}/gzip/b-{i}.jpg", "ok") for i in range(4, 6)]
    plan += [(f"{main}/deflate/c-6.jpg", "ok"), (f"{main}/deflate-raw/c-7.jpg", "ok")]
    plan += [(f"{main}/br/d-8.jpg", "ok" if brotli else "unsupported_encoding")]
    plan += [(f"{main}/zstd/e-9.jpg", "unsupported_encoding"), (f"{main}/gzip-cut/e-37.jpg", "bad_encoding")]
    plan += [(f"{main}/redirect/3/f-10.jpg", "ok"), (f"{main}/loop/g-11.jpg", "too_many_redirects")]
    plan += [(f"{main}/reset/h-12.jpg", "connection_error")]
    plan += [(f"{main}/endless/i-13.jpg", "body_too_large"), (f"{main}/bomb/j-14.jpg", "body_too_large")]
    plan += [(f"{main}/rate-limited/k-15.jpg", "ok"), (f"{main}/unavailable/l-16.jpg", "ok")]
    plan += [(f"{main}/rate-limited-long/m-17.jpg", "http_429")]
    plan += [(f"{trickle}/trickle/n-{i}.jpg", "too_slow") for i in range(18, 24)]
    plan += [(f"{trickle}/trickle-headers/o-24.jpg", "too_slow")]
    plan += [(f"{polite}/slow/p-{i}.jpg", "ok") for i in range(25, 37)]
    return plan[::3] + plan[1::3] + plan[2::3]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, local_ray):
    from flows.assemble import download_all

    tmp = tmp_path_factory.mktemp("hostile")
    with Server() as main, Server() as trickle, Server() as polite:
        plan = url_plan(main.base, trickle.base, polite.base)
        pq.write_table(pa.table({"url": [u for u, _ in plan], "caption": [f"image {i}" for i in range(len(plan))]}),
                       tmp / "urls.parquet")
        config = validate_config({
            "storage": {"root": str(tmp / "root")},
            "download": {"timeout_s": 2, "max_seconds_per_url": 4, "max_body_bytes": 2**20, "samples_per_shard": 100,
                         "threads_per_worker": 16, "retry_rounds": 2, "max_connections_per_host": 4},
            "tasks": {"captioning": {"share": 1.0}},
            "sources": [{"name": "web", "kind": "url_list", "task": "captioning", "language": "en",
                         "locations": [str(tmp / "urls.parquet")]}],
        })
        started = time.monotonic()
        stats = download_all(config, progress=False)["web"]
        elapsed = time.monotonic() - started
    return config, plan, stats, elapsed, {"main": main, "trickle": trickle, "polite": polite}


def test_every_url_counted_under_its_reason(hostile_run):
    config, plan, stats, _, _ = hostile_run
    want = Counter(reason for _, reason in plan)
    written = json.loads((Path(config.storage.root) / "raw" / "web" / "_vlmix_download.json").read_text())
    assert written["downloaded"] == want.pop("ok")
    assert written["failed"] == dict(want)
    assert written["recovered_by_retry"] == 2  # the 429 and the 503, after their Retry-After


def test_every_usable_image_kept_decoded_and_as_served(hostile_run):
    config, plan, _, _, _ = hostile_run
    stored = {}
    for tar_path in sorted((Path(config.storage.root) / "raw" / "web").glob("[0-9]*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, body in members.items():
            if name.endswith(".json"):
                stored[json.loads(body)["url"]] = members[name[:-5] + ".jpg"]
    wanted = [url for url, reason in plan if reason == "ok"]
    assert sorted(stored) == sorted(wanted)
    for url in wanted:
        assert stored[url] == jpeg(int(url.rsplit("-", 1)[1].split(".")[0])), url


def test_stage_time_is_bounded_whatever_the_servers_do(hostile_run):
    config, _, _, elapsed, _ = hostile_run
    budget = config.download.url_budget_s
    # Unbounded, each trickling URL alone would take over 300 s (a byte per 0.5 s of a ~700-byte JPEG).
    # Bounded: a first pass and one retry of the trickling URLs (one budget each), the Retry-After
    # wait, a last retry pass of the resets, and Ray's start-up costs on a loaded machine.
    assert elapsed < RETRY_AFTER_S + 2 * budget + 20, elapsed


def test_retries_are_polite_and_bounded(hostile_run):
    config, plan, _, _, servers = hostile_run
    requests = Counter()
    for server in servers.values():
        for path, n in server.requests.items():
            requests[path.split("/")[1]] += n
            if path.startswith("/trickle"):
                assert n <= 2, path  # too_slow is retried once at most, even with retry_rounds: 2
    assert requests["reset"] == 3  # first pass and both retry rounds
    assert requests["rate-limited"] == requests["unavailable"] == 2  # the retry waited for Retry-After
    assert requests["rate-limited-long"] == 1  # asked for an hour: not retried
    assert requests["loop"] == 1 + config.download.max_redirects
    last_round = pq.read_table(Path(config.storage.root) / "raw" / "web" / "_retry2" / "urls.parquet")
    assert [u.split("/")[3] for u in last_round["url"].to_pylist()] == ["reset"]


def test_connections_per_host_are_limited(hostile_run):
    config, _, _, _, servers = hostile_run
    limit = config.download.max_connections_per_host
    assert 1 < servers["polite"].max_in_flight <= limit  # one shard task, 16 threads, 12 slow URLs


def test_ray_workers_give_img2dataset_its_own_download_back(hostile_run):
    import ray

    @ray.remote(num_cpus=1)
    def patched() -> bool:
        import img2dataset.downloader

        return isinstance(img2dataset.downloader.download_image, functools.partial)

    # Ray reuses the stage's worker processes: a plain img2dataset run there must not get vlmix's download.
    assert not any(ray.get([patched.remote() for _ in range(8)]))


# The fetch on its own, without Ray: what each bound costs.


@pytest.fixture(scope="module")
def server():
    with Server() as running:
        yield running


def fetch_timed(url: str, budget_s: float = 2.0, max_bytes: int = 2**20):
    from download.fetch import FetchPolicy, fetch

    started = time.monotonic()
    try:
        body, error = fetch(url, FetchPolicy(max_bytes=max_bytes, budget_s=budget_s), 1.5, "vlmix-test"), None
    except Exception as err:  # noqa: BLE001
        body, error = None, str(err)
    return body, error, time.monotonic() - started


@pytest.mark.parametrize("kind", ["trickle", "trickle-headers"])
def test_a_trickling_server_is_cut_off_at_the_budget(server, kind):
    from download import classify_error

    body, error, elapsed = fetch_timed(f"{server.base}/{kind}/z-1.jpg", budget_s=2.0)
    assert body is None and classify_error(error) == ("too_slow", True)
    assert 2.0 <= elapsed < 3.0  # each byte comes within the 1.5 s socket timeout: only the budget ends it


@pytest.mark.parametrize("kind", ["bomb"] + (["br-bomb"] if brotli else []))
def test_a_compression_bomb_is_refused_without_decoding_past_the_cap(server, kind):
    import tracemalloc

    from download import classify_error

    cap = 4 * 2**20
    if kind == "br-bomb":
        _br_bomb()  # the server's side, made before memory is measured
    tracemalloc.start()
    try:
        body, error, _ = fetch_timed(f"{server.base}/{kind}/z-2.jpg", budget_s=10.0, max_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body is None and classify_error(error) == ("body_too_large", False)
    assert peak < 1.5 * cap  # of an endless stream, about the cap was decoded, and held once


def test_encoded_bodies_decode_to_the_served_image(server):
    for kind in ["gzip", "deflate", "deflate-raw"] + (["br"] if brotli else []):
        body, error, _ = fetch_timed(f"{server.base}/{kind}/z-3.jpg")
        assert error is None and body == jpeg(3), kind


def test_retry_after_forms():
    from download.fetch import parse_retry_after, retry_after_s

    assert retry_after_s("120") == 120.0
    in_a_minute = retry_after_s(email.utils.formatdate(time.time() + 60, usegmt=True))
    assert 58 <= in_a_minute <= 61
    assert retry_after_s("soon") is None and retry_after_s(None) is None
    asked, until = parse_retry_after("HTTP Error 429: Too Many Requests (retry after 7 s, not before 1800000000.250)")
    assert (asked, until) == (7.0, 1800000000.25)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    import ssl

    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    running = Server()
    running.socket = context.wrap_socket(running.socket, server_side=True)
    with running, pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSL_CERT_FILE", str(cert))  # the client's default context trusts it
        yield running.base.replace("http://", "https://")


def test_https_is_fetched_and_bounded_alike(tls_server):
    from download import classify_error

    body, error, _ = fetch_timed(f"{tls_server}/gzip/z-5.jpg")
    assert error is None and body == jpeg(5)
    body, error, elapsed = fetch_timed(f"{tls_server}/trickle/z-6.jpg", budget_s=2.0)
    assert body is None and classify_error(error) == ("too_slow", True) and 2.0 <= elapsed < 3.0
