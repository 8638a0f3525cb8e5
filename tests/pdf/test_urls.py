"""PDFs from a URL list, fetched on loopback with the download stage's guards: every URL accounted for
(fetched, a 404, a body over the size cap, a 503 that recovers in the retry pass, a URL that is none)."""

from __future__ import annotations

import functools
import http.server
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pypdfium2")

from pdf import generate  # noqa: E402


class _Handler(http.server.BaseHTTPRequestHandler):
    bodies: dict[str, bytes] = {}
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/flaky.pdf" and self.hits[self.path] == 1:
            self.send_error(503)
            return
        body = self.bodies.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_url_list_of_pdfs_is_fetched_with_the_download_guards_and_every_url_counted(tmp_path):
    from download.fetch import FetchPolicy
    from flows.assemble import fetch_pdf
    from pdf.settings import PdfSettings
    from pdf.stage import PdfContext, PdfStage
    from pipelines.source import Source
    from pipelines.stage import execute

    english = generate.text_pages([generate.ENGLISH])[0]
    _Handler.bodies = {"/a.pdf": english, "/flaky.pdf": generate.text_pages([generate.CHINESE], font="cjk")[0],
                       "/big.pdf": english + b"%" * 300_000}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        urls = [f"{base}/a.pdf", f"{base}/missing.pdf", f"{base}/big.pdf", f"{base}/flaky.pdf", "ftp://nowhere/x.pdf"]
        pq.write_table(pa.table({"url": urls}), tmp_path / "list.parquet")
        source = Source(name="cc_pdf_urls", kind="pdf", task="ocr_large", language="auto",
                        locations=[str(tmp_path / "list.parquet")])
        settings = PdfSettings(scripts={"en": ["Latin"], "zh": ["Han"]}, files_per_unit=3, grounded_fraction=0.0,
                               prompts={"transcribe": {"en": ["Read."], "zh": ["读。"]}})
        fetch = functools.partial(fetch_pdf, policy=FetchPolicy(max_bytes=200_000, budget_s=10), timeout=5,
                                  agent="vlmix-test")
        report = execute(PdfStage(source, fetch=fetch), PdfContext(str(tmp_path / "root"), {}, settings))
    finally:
        server.shutdown()
    assert report.units == 2  # rows 0-2 and 3-4
    pages = report.counters.tallies["pdf_pages"]
    assert (pages["urls"], pages["fetched"], pages["recovered_by_retry"]) == (5, 2, 1)
    assert dict(report.counters.drops) == {"fetch_http_404": 1, "fetch_body_too_large": 1, "fetch_bad_url": 1}
    assert report.counters.samples == pages["text_layer"] == 2
    assert _Handler.hits["/flaky.pdf"] == 2
