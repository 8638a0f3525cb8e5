"""Tokens- and requests-per-minute budgets, measured where a hosted API measures them: at the server.

The server is :class:`TranslatorDouble` (a test double of an OpenAI-compatible API on loopback) that
charges each request realistic tokens (the prompt's characters / 3, the answer up to ``max_tokens``)
and records when it arrived. The budget's window is shortened from a minute to WINDOW_S so the test
takes seconds; every window of the server's arrival times (less JITTER_S, the loopback's latency on
busy cores) must hold at most the budget, and the run must have taken the windows the budget implies.
"""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from flows.config import ConfigError, validate_config
from flows.translation import run_translation
from pipelines.storage import Storage
from tests.translate.translator_double import TranslatorDouble
from translate.client import ChatClient
from translate.prompt import build_messages

WINDOW_S = 0.5
JITTER_S = 0.06
TEXTS = [f"A photo of {n} red apples on a wooden table." for n in range(16)]


def charge(body: dict, content: str) -> tuple[int, int]:
    """What the server bills: a token per 3 characters of prompt, the answer's characters up to max_tokens."""
    prompt = sum(len(m["content"]) for m in body["messages"]) // 3
    return prompt, min(len(content), body["max_tokens"])


def busiest_window(charged: list[tuple[float, int]], window_s: float) -> tuple[int, int]:
    """The most tokens and the most requests that arrived within any ``window_s``."""
    times = sorted(charged)
    most_tokens = most_requests = 0
    for i, (start, _) in enumerate(times):
        inside = [tokens for at, tokens in times[i:] if at < start + window_s]
        most_tokens, most_requests = max(most_tokens, sum(inside)), max(most_requests, len(inside))
    return most_tokens, most_requests


@pytest.fixture
def double():
    server = TranslatorDouble(usage=charge)
    yield server
    server.close()


def test_a_token_budget_holds_at_the_server_over_every_window(double):
    budget = 1200
    messages = [build_messages(text, "Chinese") for text in TEXTS]
    per_request = sum(charge({"messages": m, "max_tokens": 48}, "词" * 48)[0] for m in messages) / len(TEXTS)

    async def go():
        async with ChatClient([double.url], model="m", concurrency=16, max_tokens_per_minute=budget,
                              rate_window_s=WINDOW_S) as client:
            return await asyncio.gather(*(client.chat(m, 48) for m in messages))

    replies = asyncio.run(go())
    assert len(replies) == len(TEXTS) and len(double.charged) == len(TEXTS)
    tokens, _ = busiest_window(double.charged, WINDOW_S - JITTER_S)
    assert tokens <= budget
    # Unlimited, 16 at once would arrive together; the budget spread them over the windows it implies.
    total = sum(t for _, t in double.charged)
    assert total > 3 * budget and per_request < budget / 3
    span = max(t for t, _ in double.charged) - min(t for t, _ in double.charged)
    assert span >= (total // budget - 1) * WINDOW_S


def test_a_request_budget_holds_at_the_server(double):
    async def go():
        async with ChatClient([double.url], model="m", concurrency=16, max_requests_per_minute=5,
                              rate_window_s=WINDOW_S) as client:
            return await asyncio.gather(*(client.chat(build_messages(t, "Chinese"), 16) for t in TEXTS[:12]))

    asyncio.run(go())
    _, requests = busiest_window(double.charged, WINDOW_S - JITTER_S)
    assert requests == 5  # at most the budget, and it was used


def test_the_budget_is_the_runs_across_its_ray_workers(tmp_path, double, local_ray, monkeypatch):
    """Two workers, one budget: the server never sees two workers' worth in a window."""
    import translate.budget

    monkeypatch.setattr(translate.budget, "MINUTE_S", WINDOW_S)  # the run's shared window, made short
    storage = Storage(str(tmp_path))
    for part in range(2):
        texts = TEXTS[part * 8:(part + 1) * 8]
        storage.write_parquet(storage.path("translate", "web", "_input", f"part-{part:05d}.parquet"),
                              pa.table({"key": [str(i) for i in range(8)], "caption": texts}))
    budget = 1200
    config = validate_config({
        "storage": {"root": str(tmp_path)}, "tasks": {"captioning": {"share": 1.0}},
        "languages": {"zh": {"name": "Chinese", "scripts": ["Han"]}},
        "translation": {"endpoints": [double.url], "model": "m", "concurrency": 16, "max_tokens_per_minute": budget,
                        "stage": {"workers": 2, "cpus_per_worker": 0, "cache": False, "max_max_tokens": 64}},
        "sources": [{"name": "web", "kind": "url_list", "task": "captioning", "language": "en",
                     "translate_to": ["zh"], "locations": ["u.parquet"]}],
    })
    reports = run_translation(config, config.translation.stage)
    assert reports["web"]["zh"].parts_written == 2 and len(double.charged) == len(TEXTS)
    tokens, _ = busiest_window(double.charged, WINDOW_S - JITTER_S)
    assert tokens <= budget
    total = sum(t for _, t in double.charged)
    span = max(t for t, _ in double.charged) - min(t for t, _ in double.charged)
    assert total > 3 * budget and span >= (total // budget - 1) * WINDOW_S


@pytest.mark.parametrize(("value", "message"), [
    (0, "translation.max_tokens_per_minute: got 0, expected: Input should be greater than 0"),
    (1000, r"max_tokens_per_minute \(1000\) is below one request's tokens"),
])
def test_budgets_are_validated(value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({
            "storage": {"root": "/tmp/unused"}, "tasks": {"captioning": {"share": 1.0}},
            "translation": {"endpoints": ["http://gpu1:8000/v1"], "max_tokens_per_minute": value},
            "sources": [{"name": "c", "kind": "url_list", "task": "captioning", "language": "en",
                         "locations": ["u.parquet"]}],
        })
    with pytest.raises(ConfigError, match="translation.max_requests_per_minute"):
        validate_config({
            "storage": {"root": "/tmp/unused"}, "tasks": {"captioning": {"share": 1.0}},
            "translation": {"max_requests_per_minute": -1},
            "sources": [{"name": "c", "kind": "url_list", "task": "captioning", "language": "en",
                         "locations": ["u.parquet"]}],
        })
