"""A TEST DOUBLE for a translation model: a loopback HTTP server speaking the OpenAI chat API.

It stands in for vLLM where the behaviour under test is vlmix's own (how conversations are cut into
requests, deduplicated, cached, restored and judged), because a real model's answers cannot be
made to lose a placeholder or change a number on demand. It answers ``/v1/models`` and
``/v1/chat/completions``; the answer to a request is ``answer(text)``, where ``text`` is what
follows "Text for translation: " in the user message. :func:`word_for_word` is the default: each
English word becomes 词 (every character outside a word, placeholders, digits, punctuation and line
breaks, is kept), so an honest answer is easy to predict by hand. Given ``api_key``, it answers 401
to a request without ``Authorization: Bearer <api_key>``, as vLLM's ``--api-key`` does; given
``rate_limited``, its first that many chat requests get 429 with ``Retry-After: <retry_after>``;
given ``usage``, it reports the tokens that function counts (a hosted API's charge) and records them
with each request's arrival time in ``charged``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import regex

from translate.prompt import USER_PREFIX

_WORD = regex.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def word_for_word(text: str) -> str:
    """Each English word -> 词; everything else as it was."""
    return _WORD.sub("词", text)


class TranslatorDouble:
    """Test double of an OpenAI-compatible translation server on 127.0.0.1 (not a model)."""

    def __init__(self, answer: Callable[[str], str] = word_for_word, model: str = "double-model",
                 api_key: str | None = None, rate_limited: int = 0, retry_after: str = "1",
                 max_model_len: int | None = None, usage: Callable[[dict, str], tuple[int, int]] | None = None):
        self.answer = answer
        self.model = model
        self.max_model_len = max_model_len  # reported by /v1/models, as vLLM does
        self.api_key = api_key
        self.rate_limited = rate_limited
        self.retry_after = retry_after
        self.authorizations: list[str | None] = []  # the Authorization header of every request
        self.times: list[float] = []  # when each chat request arrived (time.monotonic)
        # The `usage` it reports, (prompt, completion) tokens from the request body and the answer:
        # by default the text's words and the answer's characters.
        self.usage = usage or (lambda body, content: (len(body["messages"][1]["content"].removeprefix(USER_PREFIX)
                                                              .split()), len(content)))
        self.charged: list[tuple[float, int]] = []  # (arrival time, tokens reported) of each answered request
        self.asked: Counter[str] = Counter()  # request text -> times asked
        self.system_prompts: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self._authorised():
                    self._send({"object": "list", "data": [{"id": double.model, "object": "model",
                                                            "max_model_len": double.max_model_len}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                double.times.append(time.monotonic())
                if not self._authorised():
                    return
                if double.rate_limited > 0:
                    double.rate_limited -= 1
                    self._send({"error": {"message": "rate limit"}}, 429, {"Retry-After": double.retry_after})
                    return
                system, user = body["messages"]
                text = user["content"].removeprefix(USER_PREFIX)
                double.asked[text] += 1
                double.system_prompts.append(system["content"])
                content = double.answer(text)
                prompt_tokens, completion_tokens = double.usage(body, content)
                double.charged.append((double.times[-1], prompt_tokens + completion_tokens))
                self._send({
                    "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
                })

            def _authorised(self) -> bool:
                double.authorizations.append(self.headers.get("Authorization"))
                if double.api_key and self.headers.get("Authorization") != f"Bearer {double.api_key}":
                    self._send({"error": "Unauthorized"}, 401)
                    return False
                return True

            def _send(self, payload, status=200, headers=None):
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
