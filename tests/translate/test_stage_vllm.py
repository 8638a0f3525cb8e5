"""The translation stage against a real vLLM server on loopback, serving a tiny random model.

The model's answers are noise (Latin-script fragments), so these tests check behaviour: the exact
messages, bounded concurrency, one output row per input row, deduplication, the cache, validation,
resuming, and surviving a server crash. The server is started by vlmix itself on the local Ray
cluster (``launched_servers``, the path taken when no endpoint is configured).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flows import translate_cli as cli
from flows.config import validate_config
from flows.translation import run_translation
from pipelines.storage import Storage
from tests.translate.conftest import FLEET_KEY_ENV
from translate.cache import CachedAnswer, TranslationCache, text_hash
from translate.client import ChatClient
from translate.keys import Unauthorized
from translate.launch import free_port
from translate.prompt import PROMPT_VERSION, build_messages
from translate.settings import TranslateSettings
from translate.translator import Translator

SUBJECTS = ["a dog", "two cats", "a red bus", "an old man", "a small boat", "three birds", "a bicycle"]
PLACES = ["on the beach", "in the park", "near a tall building", "under a tree", "at night"]
# Short answers keep the tiny model's CPU time low; retries stay quick for the fault tests.
SETTINGS = TranslateSettings(min_max_tokens=8, max_max_tokens=12, retry_backoff_s=0.2, max_backoff_s=1.0)


def captions(count: int, offset: int = 0) -> list[str]:
    """``count`` captions drawn with repeats, as in web caption sets."""
    picks = [i % 17 for i in range(offset, offset + count)]  # 17 distinct captions, repeating
    return [f"{SUBJECTS[(j * 3) % 7].capitalize()} {PLACES[j % 5]}." for j in picks]


def write_inputs(root, source: str, parts: list[list[str]]) -> Storage:
    """Long-format input parts ``_input/part-0000i.parquet`` (key, field, text)."""
    storage = Storage(str(root))
    for index, texts in enumerate(parts):
        table = pa.table(
            {
                "key": [f"{index:03d}{row:05d}" for row in range(len(texts))],
                "field": ["caption"] * len(texts),
                "text": texts,
            }
        )
        storage.write_parquet(storage.path("translate", source, "_input", f"part-{index:05d}.parquet"), table)
    return storage


def make_config(root, url: str | None, languages=None, translate_to=("zh",), model=None, **translation):
    languages = languages or {"zh": {"name": "Chinese", "scripts": ["Han"]}}
    return validate_config(
        {
            "storage": {"root": str(root)},
            "tasks": {"captioning": {"share": 1.0}},
            "languages": languages,
            "translation": {
                "endpoints": [url] if url else [],
                "model": model,
                "concurrency": 4,
                "api_key_env": FLEET_KEY_ENV,  # the session server's key (conftest)
                **translation,
            },
            "sources": [
                {
                    "name": "coyo",
                    "kind": "url_list",
                    "task": "captioning",
                    "language": "en",
                    "locations": ["unused.parquet"],
                    "translate_to": list(translate_to),
                }
            ],
        }
    )


def outputs(storage: Storage, target: str) -> dict[str, list[dict]]:
    paths = storage.glob(storage.path("translate", "coyo", target, "part-*.parquet"))
    return {p.rsplit("/", 1)[-1]: pq.read_table(p, filesystem=storage.fs).to_pylist() for p in paths}


def assert_rows_preserved(storage: Storage, target: str, parts: list[list[str]]) -> list[dict]:
    """Every input row comes back exactly once, in its own part, with its English original."""
    found = outputs(storage, target)
    assert sorted(found) == [f"part-{i:05d}.parquet" for i in range(len(parts))]
    rows = []
    for index, texts in enumerate(parts):
        got = found[f"part-{index:05d}.parquet"]
        assert [(r["key"], r["field"], r["source_text"]) for r in got] == [
            (f"{index:03d}{row:05d}", "caption", text) for row, text in enumerate(texts)
        ]
        rows += got
    for row in rows:
        assert (row["text"] is None) != (row["error"] is None)  # translated xor flagged
        assert row["target_language"] == target and row["source_language"] == "en"
        assert row["prompt_version"] == PROMPT_VERSION
    return rows


def test_exact_messages_reach_the_server_with_bounded_concurrency(vllm_url, tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = [f"{caption} Picture {i}." for i, caption in enumerate(captions(24))]

    async def go():
        # The same server listed twice: two endpoints, each allowed 3 requests at once.
        async with ChatClient([vllm_url, vllm_url], concurrency=3, api_key_env=FLEET_KEY_ENV) as client:
            replies = await asyncio.gather(*(client.chat(build_messages(t, "Chinese"), 8) for t in texts))
            return client, replies

    client, replies = asyncio.run(go())
    assert client.model == str(tiny_model)  # discovered from /v1/models
    assert [e.peak_in_flight for e in client.endpoints] == [3, 3]
    assert sum(e.requests for e in client.endpoints) == 24 and client.stats.retries == 0
    for text, reply in zip(texts, replies, strict=True):
        rendered = tokenizer.apply_chat_template(build_messages(text, "Chinese"), add_generation_prompt=True)
        ids = rendered["input_ids"] if isinstance(rendered, dict) or hasattr(rendered, "keys") else rendered
        assert reply.prompt_tokens == len(ids)  # the server tokenised exactly our two messages
        assert reply.completion_tokens <= 8


def test_noise_is_flagged_duplicates_are_asked_once_and_a_rerun_hits_the_cache(tmp_path, vllm_url):
    parts = [captions(30) + [""], captions(30, offset=20)]
    storage = write_inputs(tmp_path, "coyo", parts)
    distinct = {t for texts in parts for t in texts if t}
    config = make_config(tmp_path, vllm_url)

    first = run_translation(config, SETTINGS)["coyo"]["zh"]
    rows = assert_rows_preserved(storage, "zh", parts)
    reasons = Counter(r["error"] for r in rows)
    assert reasons["empty_source"] == 1
    assert reasons["wrong_script"] >= 0.9 * (len(rows) - 1)  # Latin noise is no Chinese
    assert first.stats.translated == 0 and first.stats.rows == len(rows)
    assert first.stats.requests == len(distinct)  # each distinct text asked once in the run
    # Every text not sent was a repeat: within a part, of an earlier part in the same process, or (parts on
    # Ray tasks, one after another) answered from the cache an earlier part of this run filled.
    assert first.stats.deduplicated + first.stats.from_cache == len(rows) - 1 - len(distinct)

    again = run_translation(config, SETTINGS)["coyo"]["zh"]  # finished parts are skipped
    assert (again.parts_skipped, again.parts_written) == (2, 0)

    storage.remove(storage.path("translate", "coyo", "zh"))
    cached = run_translation(config, SETTINGS)["coyo"]["zh"]
    assert (
        cached.stats.requests == 0
        and cached.stats.from_cache + cached.stats.from_run == cached.stats.distinct_texts
    )
    assert [r["raw_output"] for r in assert_rows_preserved(storage, "zh", parts)] == [
        r["raw_output"] for r in rows
    ]


def test_good_cached_translations_are_emitted_as_translated(tmp_path, vllm_url, tiny_model):
    parts = [captions(6)]
    storage = write_inputs(tmp_path, "coyo", parts)
    cache = TranslationCache(storage, storage.path("translate", "_cache"), str(tiny_model), PROMPT_VERSION)
    good = {parts[0][0]: "海滩上的一只狗。", parts[0][1]: "公园里的两只猫。"}
    cache.add("zh", [(text_hash(t), t, CachedAnswer(z, "stop")) for t, z in good.items()])

    report = run_translation(make_config(tmp_path, vllm_url, model=str(tiny_model)), SETTINGS)["coyo"]["zh"]
    rows = assert_rows_preserved(storage, "zh", parts)
    translated = {r["source_text"]: r["text"] for r in rows if r["error"] is None}
    assert translated == good
    assert all(r["origin"] == "cache" for r in rows if r["source_text"] in good)
    assert report.stats.translated == sum(1 for r in rows if r["source_text"] in good)


def test_conversations_through_the_real_server_are_judged_whole(tmp_path, vllm_url, tiny_model):
    """Two conversations: one whose every piece the cache holds in good Chinese (translated whole, no
    request), one the tiny model answers with noise (flagged whole, every answer kept)."""
    import json

    known = [{"from": "human", "value": "<image>\nWhat is at `https://x.org`?"},
             {"from": "gpt", "value": "A red bus with 2 doors.\n```\nbus = 2\n```"}]
    noise = [{"from": "human", "value": "Describe the scene in detail."},
             {"from": "gpt", "value": "Three birds sit on a wire near a tall building at night."}]
    storage = Storage(str(tmp_path))
    storage.write_parquet(storage.path("translate", "coyo", "_input", "part-00000.parquet"), pa.table({
        "key": ["known", "noise"], "field": ["conversations"] * 2,
        "text": [json.dumps(known), json.dumps(noise)]}))
    cache = TranslationCache(storage, storage.path("translate", "_cache"), str(tiny_model), PROMPT_VERSION)
    good = {"What is at {{1}}?": "{{1}} 上有什么？", "A red bus with 2 doors.": "一辆有2扇门的红色公共汽车。"}
    cache.add("zh", [(text_hash(t), t, CachedAnswer(z, "stop")) for t, z in good.items()])

    run_translation(make_config(tmp_path, vllm_url, model=str(tiny_model)), SETTINGS)
    rows = {r["key"]: r for r in outputs(storage, "zh")["part-00000.parquet"]}
    assert json.loads(rows["known"]["text"]) == [
        {"from": "human", "value": "<image>\n`https://x.org` 上有什么？"},
        {"from": "gpt", "value": "一辆有2扇门的红色公共汽车。\n```\nbus = 2\n```"}]
    assert rows["known"]["origin"] == "cache" and rows["known"]["error"] is None
    assert rows["noise"]["text"] is None and rows["noise"]["origin"] == "request"
    assert rows["noise"]["error"] not in (None, "bad_conversation", "empty_source")  # judged on its answers
    assert len(json.loads(rows["noise"]["raw_output"])) == 2  # one answer per turn's piece, kept


def test_the_servers_vlmix_starts_want_the_runs_key(vllm_fleet, monkeypatch):
    async def ask(**key):
        async with ChatClient(vllm_fleet.urls, max_retries=1, retry_backoff_s=0.05, **key) as client:
            return await client.chat(build_messages("A dog.", "Chinese"), 4)

    with pytest.raises(Unauthorized, match="wants an API key"):
        asyncio.run(ask())
    monkeypatch.setenv("SOMEONE_ELSES_KEY", "guess")
    with pytest.raises(Unauthorized, match=r"refused the key from \$SOMEONE_ELSES_KEY"):
        asyncio.run(ask(api_key_env="SOMEONE_ELSES_KEY"))
    assert asyncio.run(ask(api_key=vllm_fleet.api_key)).completion_tokens <= 4


def test_a_new_language_needs_only_configuration(tmp_path, vllm_url):
    parts = [captions(8)]
    write_inputs(tmp_path, "coyo", parts)
    languages = {
        "zh": {"name": "Chinese", "scripts": ["Han"]},
        "ru": {"name": "Russian", "scripts": ["Cyrillic"]},
        "fr": {"name": "French", "scripts": ["Latin"]},
    }
    raw = make_config(tmp_path, None, languages, translate_to=["ru", "fr"], targets=["ru", "fr"]).model_dump(
        mode="json"
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "stage.yaml").write_text(yaml.safe_dump(SETTINGS.model_dump(mode="json")))

    code = cli.main(
        [
            "--config",
            str(tmp_path / "config.yaml"),
            "--endpoint",
            vllm_url,
            "--settings",
            str(tmp_path / "stage.yaml"),
        ]
    )
    assert code == 0
    storage = Storage(str(tmp_path))
    russian = assert_rows_preserved(storage, "ru", parts)
    french = assert_rows_preserved(storage, "fr", parts)
    assert Counter(r["error"] for r in russian)["wrong_script"] >= 0.9 * len(russian)
    # The same Latin noise is the right script for French: it fails there for other reasons, if at all.
    assert not any(r["error"] == "wrong_script" for r in french)


def test_an_unreachable_server_fails_cleanly_and_a_rerun_finishes(tmp_path, vllm_url, tiny_model, capsys):
    parts = [captions(5), captions(5, offset=5)]
    storage = write_inputs(tmp_path, "coyo", parts)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = make_config(tmp_path, dead, model=str(tiny_model), max_retries=1)

    failed = run_translation(config, SETTINGS)["coyo"]["zh"]
    assert sorted(failed.failed) == ["00000", "00001"] and "ServerUnavailable" in failed.failed["00000"]
    assert failed.transient == set(failed.failed)  # a server that went away: the flow's retry may succeed
    assert outputs(storage, "zh") == {}  # nothing half-written

    done = run_translation(config, SETTINGS, endpoints=[vllm_url])["coyo"]["zh"]
    assert done.parts_written == 2 and not done.failed
    assert_rows_preserved(storage, "zh", parts)


def test_killing_the_server_mid_run_loses_and_doubles_nothing(tmp_path, vllm_fleet, tiny_model):
    parts = [[f"{c} Shot {p}-{i}." for i, c in enumerate(captions(12))] for p in range(8)]
    storage = write_inputs(tmp_path, "coyo", parts)
    config = make_config(tmp_path, None)
    # Long enough retries to outlast a restart (about a minute here), spread over 4 s steps.
    settings = SETTINGS.model_copy(update={"parts_in_flight": 1, "max_backoff_s": 4.0})
    outcome = {}

    async def run():
        async with ChatClient(
            vllm_fleet.urls,
            model=str(tiny_model),
            concurrency=2,
            max_retries=60,
            retry_backoff_s=0.5,
            max_backoff_s=4.0,
            api_key=vllm_fleet.api_key,
        ) as client:
            translator = Translator(storage, client, config.languages, settings)
            outcome["report"] = await translator.translate_source(
                "coyo", storage.glob(storage.path("translate", "coyo", "_input", "*.parquet")), ["zh"]
            )
            outcome["stats"] = client.stats

    worker = threading.Thread(target=lambda: asyncio.run(run()))
    worker.start()
    deadline = time.monotonic() + 120
    while not outputs(storage, "zh") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(outputs(storage, "zh")) < len(parts), "the run finished before the server could be killed"
    vllm_fleet.kill(0)
    vllm_fleet.restart(0)
    worker.join(timeout=300)
    assert not worker.is_alive()

    report = outcome["report"]["zh"]
    assert not report.failed and report.parts_written == len(parts)
    assert outcome["stats"].errors.get("connection", 0) + outcome["stats"].errors.get("timeout", 0) > 0
    rows = assert_rows_preserved(storage, "zh", parts)
    assert len(rows) == sum(len(p) for p in parts)
    cached = TranslationCache(storage, storage.path("translate", "_cache"), str(tiny_model), PROMPT_VERSION)
    shards = storage.glob(cached.folder("zh") + "/*.parquet")
    hashes = [h for s in shards for h in pq.read_table(s, filesystem=storage.fs)["hash"].to_pylist()]
    assert sorted(hashes) == sorted({text_hash(t) for p in parts for t in p})  # each answer stored once


pytestmark = pytest.mark.slow


def test_requests_go_out_from_ray_tasks_one_part_each(tmp_path, vllm_url, local_ray):
    import ray

    parts = [captions(12, offset=12 * i) for i in range(4)]
    storage = write_inputs(tmp_path, "coyo", parts)
    config = make_config(tmp_path, vllm_url)
    settings = SETTINGS.model_copy(update={"workers": 2, "cache": False})
    assert ray.is_initialized()
    report = run_translation(config, settings)["coyo"]["zh"]
    rows = assert_rows_preserved(storage, "zh", parts)  # every input row back once, whichever worker wrote it
    assert (report.parts_written, report.parts_skipped, report.failed) == (4, 0, {})
    assert report.stats.rows == len(rows) == sum(len(p) for p in parts)
    # Each task asks its own part's distinct texts once: at least the run's distinct texts, at most
    # one request per distinct text of each part.
    assert len({t for p in parts for t in p}) <= report.stats.requests <= sum(len(set(p)) for p in parts)
    # What the run cost, as vLLM's `usage` counted it: the workers' parts add up on the driver.
    cost = report.cost
    assert cost.requests == report.stats.requests and cost.prompt_tokens == report.stats.prompt_tokens
    assert cost.prompt_tokens > 100 * cost.requests  # the Figure-5 system message alone is longer
    assert 0 < cost.completion_tokens <= SETTINGS.max_max_tokens * cost.requests
    assert report.stats.run["tokens_per_s"] > 0 and report.stats.run["rows"] == len(rows)


def test_a_failing_part_is_reported_and_the_others_are_written(tmp_path, vllm_url, local_ray):
    parts = [captions(6, offset=6 * i) for i in range(4)]
    storage = write_inputs(tmp_path, "coyo", parts)
    bad = storage.path("translate", "coyo", "_input", "part-00001.parquet")
    storage.write_parquet(bad, pa.table({"id": ["x"], "words": ["no key, field or text column"]}))
    config = make_config(tmp_path, vllm_url)
    report = run_translation(config, SETTINGS.model_copy(update={"workers": 2, "cache": False}))["coyo"]["zh"]
    # Part 1 is unreadable: it alone is reported failed, with its reason; the others are written.
    assert report.parts_written == 3 and sorted(report.failed) == ["00001"]
    message = report.failed["00001"]
    assert message.startswith("InputError: ") and "Traceback" not in message and "missing" in message
    assert report.stats.rows == len(parts[0]) + len(parts[2]) + len(parts[3])
