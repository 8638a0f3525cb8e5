"""Faults a real vLLM server cannot be made to show on demand, against a small fake server.

``FakeChatServer`` is a fake: it answers ``/v1/chat/completions`` from a script of behaviours
(``500``, ``hang``, ``400``, ``ok``), one per request, so the client's retries and timeouts can be
checked exactly. Everything else is tested against the real vLLM server.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from translate.client import ChatClient, Rejected, Reply, ServerUnavailable
from translate.launch import free_port
from translate.prompt import build_messages


class FakeChatServer:
    """A fake OpenAI chat server on loopback that plays ``script`` (then answers ``ok`` forever)."""

    def __init__(self, script: list[str], hang_s: float = 3.0):
        self.script = list(script)
        self.hang_s = hang_s
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                behaviour = fake.script.pop(0) if fake.script else "ok"
                if behaviour == "hang":
                    time.sleep(fake.hang_s)
                    return
                if behaviour in ("500", "400"):
                    self._send(int(behaviour), {"error": {"message": f"fake {behaviour}"}})
                    return
                self._send(
                    200,
                    {
                        "choices": [{"message": {"content": "一只狗"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 3},
                    },
                )

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # closing does not wait out a hanging handler
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def make(script, **kwargs):
        servers.append(FakeChatServer(script, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def chat(urls, messages, **kwargs):
    async def go():
        async with ChatClient(urls, model="m", retry_backoff_s=0.05, max_backoff_s=0.2, **kwargs) as client:
            return await client.chat(messages, max_tokens=16), client.stats

    return asyncio.run(go())


def test_500_is_retried_until_an_answer(fake):
    server = fake(["500", "500"])
    messages = build_messages("A dog.", "Chinese")
    reply, stats = chat([server.url], messages, max_retries=3)
    assert reply == Reply("一只狗", "stop", 10, 3)
    assert stats.requests == 3 and stats.retries == 2 and stats.errors == {"http_500": 2}
    assert all(r["messages"] == messages for r in server.requests)
    assert server.requests[0]["temperature"] == 0.0 and server.requests[0]["max_tokens"] == 16


def test_hang_past_the_timeout_is_retried(fake):
    server = fake(["hang"], hang_s=2.0)
    started = time.monotonic()
    reply, stats = chat([server.url], build_messages("A dog.", "Chinese"), timeout_s=0.5, max_retries=2)
    assert isinstance(reply, Reply) and stats.errors == {"timeout": 1}
    assert time.monotonic() - started < 1.9  # the hung request was abandoned, not waited out


def test_retries_exhausted_raise(fake):
    server = fake(["500"] * 10)
    with pytest.raises(ServerUnavailable, match="HTTP 500"):
        chat([server.url], build_messages("A dog.", "Chinese"), max_retries=2)
    assert len(server.requests) == 3


def test_a_client_error_is_an_answer_not_a_retry(fake):
    server = fake(["400"])
    reply, stats = chat([server.url], build_messages("A dog.", "Chinese"), max_retries=3)
    assert isinstance(reply, Rejected) and reply.status == 400
    assert len(server.requests) == 1 and stats.retries == 0


def test_a_dead_endpoint_is_skipped_for_a_live_one(fake):
    live = fake([])
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    reply, stats = chat([dead, live.url], build_messages("A dog.", "Chinese"), max_retries=3)
    assert isinstance(reply, Reply)
    assert stats.errors.get("connection", 0) <= 1
