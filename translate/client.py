"""An async client for OpenAI-compatible chat completion servers (vLLM), over several endpoints.

Each endpoint holds at most ``concurrency`` requests at once; a request goes to the least busy
endpoint that is not cooling down after a failure. Timeouts, connection errors, 429 and 5xx are
retried with exponential backoff (and may land on another endpoint); after ``max_retries`` the
request raises :class:`ServerUnavailable`. Any other 4xx (e.g. a prompt longer than the model's
context) is an answer about that input, returned as :class:`Rejected`, never retried, except 401
and 403: refused credentials raise :class:`~translate.keys.Unauthorized` at once. A ``Retry-After``
on a 429 or 503 (a hosted API's rate limit) is waited out before that endpoint is asked again.
Endpoints that want a key get it as a bearer token (:mod:`translate.keys`).

>>> async with ChatClient(["http://127.0.0.1:8000/v1"], model="qwen") as client:  # doctest: +SKIP
...     reply = await client.chat(build_messages("A red bus.", "Chinese"), max_tokens=64)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from pipelines._imports import require
from translate.budget import MINUTE_S, RateBudget
from translate.keys import endpoint_keys, retry_after_s, unauthorized

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class ServerUnavailable(RuntimeError):
    """No endpoint answered a request within the retry budget."""


@dataclass(frozen=True, slots=True)
class Reply:
    content: str
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """The server refused this input (a 4xx other than 408/429); ``detail`` is its message."""

    status: int
    detail: str


@dataclass(slots=True)
class Endpoint:
    url: str  # base URL as OpenAI clients take it, e.g. http://host:8000/v1
    in_flight: int = 0
    peak_in_flight: int = 0
    requests: int = 0
    failures: int = 0
    cooldown_until: float = 0.0


@dataclass(slots=True)
class ClientStats:
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    rejected: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class ChatClient:
    """Bounded, retrying chat completions over one or more endpoints; use as an async context manager."""

    def __init__(
        self,
        endpoints: list[str],
        model: str | None = None,
        concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        temperature: float = 0.0,
        retry_backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        api_key_env: str | dict[str, str] | None = None,
        api_key: str | None = None,
        max_tokens_per_minute: int | None = None,
        max_requests_per_minute: int | None = None,
        rate_budget: str | None = None,
        rate_window_s: float = MINUTE_S,
    ):
        if not endpoints:
            raise ValueError("ChatClient needs at least one endpoint URL")
        self.endpoints = [Endpoint(url.rstrip("/")) for url in endpoints]
        # api_key: the servers vlmix started; api_key_env: the variable(s) naming a configured endpoint's key.
        self._keys = endpoint_keys([e.url for e in self.endpoints], api_key, api_key_env)
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.temperature = temperature
        self.retry_backoff_s = retry_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = ClientStats()
        # The run's budget, shared by its workers (a Ray actor named rate_budget), else this client's own.
        limited = rate_budget or max_tokens_per_minute or max_requests_per_minute
        self.budget = RateBudget(max_tokens_per_minute, max_requests_per_minute, rate_window_s,
                                 actor=rate_budget) if limited else None
        self.max_model_len: int | None = None  # the model's context, if the endpoint reports it (vLLM does)
        self._slots: asyncio.Condition | None = None
        self._session = None

    async def __aenter__(self) -> ChatClient:
        aiohttp = require("aiohttp", "translate")
        connector = aiohttp.TCPConnector(limit=self.concurrency * len(self.endpoints), ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        self._slots = asyncio.Condition()
        if self.model is None:
            self.model = await self.served_model()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def served_model(self) -> str:
        """The first model id the first answering endpoint serves (``GET /models``)."""
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            endpoint = self.endpoints[attempt % len(self.endpoints)]
            try:
                async with self._session.get(f"{endpoint.url}/models", timeout=self._timeout(),
                                             headers=self._headers(endpoint)) as response:
                    if response.status in (401, 403):
                        raise unauthorized(endpoint.url, response.status, self._keys[endpoint.url])
                    response.raise_for_status()
                    served = (await response.json())["data"][0]
                    self.max_model_len = served.get("max_model_len")
                    return served["id"]
            except PermissionError:
                raise
            except Exception as err:  # noqa: BLE001 -- any failure here is retried, then reported
                last = err
                await asyncio.sleep(self._backoff(attempt))
        raise ServerUnavailable(f"no endpoint of {[e.url for e in self.endpoints]} lists its models: {last}")

    async def chat(self, messages: list[dict], max_tokens: int) -> Reply | Rejected:
        """One chat completion, retried on transient failures; raises :class:`ServerUnavailable`."""
        aiohttp = require("aiohttp", "translate")
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": max_tokens,
        }
        last_error = "no attempt"
        wait_s = 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(wait_s)
            wait_s = self._backoff(attempt)
            ticket = await self.budget.reserve(messages, max_tokens) if self.budget is not None else None
            endpoint = await self._acquire()
            self.stats.requests += 1
            endpoint.requests += 1
            try:
                async with self._session.post(
                    f"{endpoint.url}/chat/completions", json=payload, timeout=self._timeout(),
                    headers=self._headers(endpoint),
                ) as response:
                    if response.status == 200:
                        reply = _reply(await response.json())
                        if ticket is not None and reply.prompt_tokens is not None:
                            self.budget.settle(ticket, reply.prompt_tokens + (reply.completion_tokens or 0))
                        return reply
                    if response.status in (401, 403):
                        raise unauthorized(endpoint.url, response.status, self._keys[endpoint.url])
                    detail = (await response.text())[:500]
                    asked = retry_after_s(response.headers.get("Retry-After"))
                    if asked is not None and response.status in (429, 503):
                        wait_s = max(wait_s, asked)  # the server's rate limit says when
                    if response.status not in _RETRY_STATUS and 400 <= response.status < 500:
                        self.stats.rejected += 1
                        return Rejected(response.status, detail)
                    last_error = f"HTTP {response.status} from {endpoint.url}: {detail[:200]}"
                    self._count_error(f"http_{response.status}")
            except TimeoutError:
                last_error = f"no answer from {endpoint.url} within {self.timeout_s} s"
                self._count_error("timeout")
            except aiohttp.ClientError as err:
                last_error = f"{type(err).__name__} talking to {endpoint.url}: {err}"
                self._count_error("connection")
            finally:
                await self._release(endpoint)
            endpoint.failures += 1
            # Send the next tries elsewhere for a while: a dead server should not get every retry.
            endpoint.cooldown_until = time.monotonic() + wait_s
            log.debug("request failed (attempt %d): %s", attempt + 1, last_error)
        raise ServerUnavailable(f"gave up after {self.max_retries + 1} attempts; last: {last_error}")

    def peak_in_flight(self) -> dict[str, int]:
        """Per endpoint, the most requests it held at once."""
        return {e.url: e.peak_in_flight for e in self.endpoints}

    def _headers(self, endpoint: Endpoint) -> dict[str, str] | None:
        key = self._keys[endpoint.url]
        return key.header if key is not None else None

    def _timeout(self):
        aiohttp = require("aiohttp", "translate")
        return aiohttp.ClientTimeout(total=self.timeout_s)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.max_backoff_s, self.retry_backoff_s * 2**attempt)
        return delay * random.uniform(0.8, 1.0)  # jitter: retries of many requests do not arrive at once

    def _count_error(self, kind: str) -> None:
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    async def _acquire(self) -> Endpoint:
        async with self._slots:
            while True:
                free = [e for e in self.endpoints if e.in_flight < self.concurrency]
                if free:
                    now = time.monotonic()
                    endpoint = min(free, key=lambda e: (e.cooldown_until > now, e.in_flight, e.requests))
                    endpoint.in_flight += 1
                    endpoint.peak_in_flight = max(endpoint.peak_in_flight, endpoint.in_flight)
                    return endpoint
                await self._slots.wait()

    async def _release(self, endpoint: Endpoint) -> None:
        async with self._slots:
            endpoint.in_flight -= 1
            self._slots.notify()


def _reply(body: dict) -> Reply:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    return Reply(
        content=choice["message"].get("content") or "",
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )


def client_options(client, stage, *, concurrency: int | None = None, api_key: str | None = None) -> dict:
    """``ChatClient(endpoints, **client_options(...))``: the one place the client's settings
    (:class:`~translate.settings.ClientSettings`) and the stage's retry timing are put together;
    ``concurrency`` overrides the per-endpoint requests (a share of them per worker), ``api_key`` is
    the key of the servers vlmix started (configured endpoints' keys are read from ``api_key_env``)."""
    return {**client.model_dump(include=_CLIENT_FIELDS),
            "concurrency": concurrency or client.concurrency,
            "retry_backoff_s": stage.retry_backoff_s, "max_backoff_s": stage.max_backoff_s, "api_key": api_key}


_CLIENT_FIELDS = {"model", "concurrency", "timeout_s", "max_retries", "temperature", "api_key_env",
                  "max_tokens_per_minute", "max_requests_per_minute"}
