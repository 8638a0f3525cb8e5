"""Tokens and requests per minute: the budgets hosted APIs set, kept by one run across its workers.

A request reserves tokens before it is sent: its prompt counted high (every character of the messages
at :data:`~translate.settings.CHARS_PER_PROMPT_TOKEN` a token, plus a few per message) plus its answer
budget (``max_tokens``, which the server never exceeds). It goes when the requests of the last
``window_s`` (a minute) and it together stay within ``translation.max_tokens_per_minute`` and
``translation.max_requests_per_minute``; else it waits and asks again. When the answer comes, the reservation is
settled to the tokens the server's ``usage`` reports, so the room a high estimate held is given back.

One :class:`RateWindow` keeps the budget of a run: in the process that sends the requests, or, when
the requests go out from Ray workers, in one Ray actor (:func:`shared_budget`) that every worker's
client asks (one small call per request, not per token), so the endpoints see the run's budget, not
a budget per worker.

>>> window = RateWindow(tokens=1000, window_s=60)
>>> window.reserve(600, now=0.0), window.reserve(600, now=1.0)  # no room: ask again in 3 s
((0, 0.0), (None, 3.0))
>>> window.settle(0, 350)  # the server counted 350 tokens: room for the second now
>>> window.reserve(600, now=4.0)
(1, 0.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from dataclasses import dataclass

from translate.settings import CHARS_PER_PROMPT_TOKEN

TOKENS_PER_MESSAGE = 8  # a chat template's role markers and separators, counted high
MINUTE_S = 60.0
POLLS_PER_WINDOW = 20  # a request that finds no room asks again within a 20th of the window


@dataclass
class _Entry:
    ticket: int
    at: float
    tokens: int


class RateWindow:
    """A sliding window of reservations: no ``window_s`` ever holds more than ``tokens`` tokens or
    ``requests`` requests (None: no limit). Pure bookkeeping; the caller sleeps the delay it returns."""

    def __init__(self, tokens: int | None = None, requests: int | None = None, window_s: float = MINUTE_S):
        if tokens is not None and tokens <= 0 or requests is not None and requests <= 0 or window_s <= 0:
            raise ValueError(f"rate budget: tokens, requests and window_s must be positive, got "
                             f"{tokens}, {requests}, {window_s}")
        self.tokens, self.requests, self.window_s = tokens, requests, window_s
        self._entries: deque[_Entry] = deque()  # in placement order, which is time order
        self._by_ticket: dict[int, _Entry] = {}
        self._next = 0

    def reserve(self, tokens: int, now: float | None = None) -> tuple[int | None, float]:
        """Place a request of ``tokens`` now if the window has room: ``(ticket, 0)``; else ``(None, s)``,
        ask again in ``s`` seconds (when the oldest request leaves the window, or sooner: answers
        settled meanwhile may give room back)."""
        import time

        now = time.monotonic() if now is None else now
        while self._entries and self._entries[0].at <= now - self.window_s:  # out of the window
            self._by_ticket.pop(self._entries.popleft().ticket, None)
        need = min(tokens, self.tokens) if self.tokens else tokens  # a larger one goes alone
        over_tokens = self.tokens is not None and sum(e.tokens for e in self._entries) + need > self.tokens
        over_requests = self.requests is not None and len(self._entries) + 1 > self.requests
        if over_tokens or over_requests:
            leaves = self._entries[0].at + self.window_s - now
            return None, min(leaves, max(0.01, self.window_s / POLLS_PER_WINDOW))
        entry = _Entry(self._next, now, need)
        self._next += 1
        self._entries.append(entry)
        self._by_ticket[entry.ticket] = entry
        return entry.ticket, 0.0

    def settle(self, ticket: int, tokens: int) -> None:
        """The request of ``ticket`` used ``tokens`` (the server's count): what it holds from now on."""
        entry = self._by_ticket.get(ticket)
        if entry is not None:
            entry.tokens = max(0, tokens)


class RateBudget:
    """What a client awaits before each request: a local :class:`RateWindow`, or the run's shared one
    (a Ray actor named ``actor``)."""

    def __init__(self, tokens: int | None = None, requests: int | None = None, window_s: float = MINUTE_S,
                 actor: str | None = None):
        self._window = None if actor else RateWindow(tokens, requests, window_s)
        self._actor = _actor(actor) if actor else None
        self.waited_s = 0.0  # how long requests waited for the budget, in all

    async def reserve(self, messages: list[dict], max_tokens: int) -> int:
        need = prompt_estimate(messages) + max_tokens
        while True:
            if self._actor is not None:
                ticket, delay = await self._actor.reserve.remote(need)
            else:
                ticket, delay = self._window.reserve(need)
            if ticket is not None:
                return ticket
            self.waited_s += delay
            await asyncio.sleep(delay)

    def settle(self, ticket: int, tokens: int | None) -> None:
        if tokens is None:  # the server did not say: the reservation stands
            return
        if self._actor is not None:
            self._actor.settle.remote(ticket, tokens)
        else:
            self._window.settle(ticket, tokens)


def prompt_estimate(messages: list[dict]) -> int:
    """The prompt's tokens, counted high: characters at CHARS_PER_PROMPT_TOKEN, plus the template's."""
    chars = sum(len(m.get("content") or "") for m in messages)
    return int(chars / CHARS_PER_PROMPT_TOKEN) + 1 + TOKENS_PER_MESSAGE * len(messages)


def _actor(name: str):
    import ray

    return ray.get_actor(name)


@contextlib.contextmanager
def shared_budget(tokens: int | None, requests: int | None, window_s: float | None = None):
    """A :class:`RateWindow` in a Ray actor for one run's workers; yields its name (None: no budget)."""
    window_s = window_s or MINUTE_S
    if tokens is None and requests is None:
        yield None
        return
    import ray

    name = f"vlmix-rate-budget-{uuid.uuid4().hex[:12]}"
    actor = ray.remote(num_cpus=0)(RateWindow).options(name=name).remote(tokens, requests, window_s)
    ray.get(actor.reserve.remote(0))  # up before the workers look it up
    try:
        yield name
    finally:
        ray.kill(actor)


def check_budget(tokens_per_minute: int | None, max_answer_tokens: int, prompt_tokens: int) -> None:
    """Raise ValueError if one request's answer budget and prompt do not fit ``max_tokens_per_minute``."""
    if tokens_per_minute is not None and tokens_per_minute < max_answer_tokens + prompt_tokens:
        raise ValueError(
            f"max_tokens_per_minute ({tokens_per_minute}) is below one request's tokens (stage.max_max_tokens "
            f"{max_answer_tokens} + {prompt_tokens} for the prompt): lower translation.stage.max_max_tokens "
            "or raise the budget"
        )
