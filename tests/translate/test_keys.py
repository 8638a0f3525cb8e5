"""Keyed endpoints and hosted APIs' rate limits, against :class:`TranslatorDouble` (a test double of an
OpenAI-compatible server on loopback; the real vLLM server with a key is in test_stage_vllm.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from flows.config import ConfigError, validate_config
from pipelines.languages import Language
from pipelines.storage import Storage
from tests.translate.translator_double import TranslatorDouble
from translate.client import ChatClient, Reply
from translate.keys import MissingApiKey, Unauthorized, new_key
from translate.prompt import build_messages
from translate.settings import TranslateSettings
from translate.translator import Translator

MESSAGES = build_messages("A dog.", "Chinese")


@pytest.fixture
def double():
    doubles = []

    def make(**kwargs):
        doubles.append(TranslatorDouble(**kwargs))
        return doubles[-1]

    yield make
    for d in doubles:
        d.close()


def ask(urls, **kwargs):
    async def go():
        async with ChatClient(urls, model="m", retry_backoff_s=0.05, max_backoff_s=0.2, max_retries=3,
                              **kwargs) as client:
            return await client.chat(MESSAGES, 16), client.stats

    return asyncio.run(go())


def test_a_keyed_endpoint_refuses_a_request_without_the_key_clearly_and_once(double):
    server = double(api_key=new_key())
    with pytest.raises(Unauthorized, match="wants an API key; set translation.api_key_env"):
        ask([server.url])
    assert server.authorizations == [None]  # refused credentials are not retried


def test_the_key_named_by_api_key_env_is_sent_as_a_bearer_token(double, monkeypatch):
    key = new_key()
    server = double(api_key=key)
    monkeypatch.setenv("VLMIX_TEST_KEY", key)
    reply, _ = ask([server.url], api_key_env="VLMIX_TEST_KEY")
    assert isinstance(reply, Reply) and server.authorizations == [f"Bearer {key}"]

    monkeypatch.setenv("VLMIX_TEST_KEY", "wrong-key")
    with pytest.raises(Unauthorized, match=r"refused the key from \$VLMIX_TEST_KEY") as refused:
        ask([server.url], api_key_env="VLMIX_TEST_KEY")
    assert "wrong-key" not in str(refused.value)


def test_a_variable_that_is_not_set_is_named_in_the_error(double, monkeypatch):
    monkeypatch.delenv("VLMIX_UNSET_KEY", raising=False)
    server = double()
    with pytest.raises(MissingApiKey, match="VLMIX_UNSET_KEY is not set"):
        ask([server.url], api_key_env="VLMIX_UNSET_KEY")
    assert server.authorizations == []  # found before any request


def test_keys_per_endpoint(double, monkeypatch):
    keyed, open_ = double(api_key="k1"), double()
    monkeypatch.setenv("ONLY_ONE", "k1")
    for url in (keyed.url, open_.url):
        reply, _ = ask([url], api_key_env={keyed.url: "ONLY_ONE"})
        assert isinstance(reply, Reply)
    assert keyed.authorizations == ["Bearer k1"] and open_.authorizations == [None]


def test_retry_after_of_a_rate_limit_is_waited_out(double):
    server = double(rate_limited=1, retry_after="1")
    reply, stats = ask([server.url])
    assert isinstance(reply, Reply) and stats.errors == {"http_429": 1}
    assert server.times[1] - server.times[0] >= 0.95  # not the 0.05 s backoff: the server's second


def test_the_key_is_in_no_file_a_run_writes(tmp_path, double, monkeypatch):
    key = new_key()
    server = double(api_key=key)
    monkeypatch.setenv("VLMIX_TEST_KEY", key)
    storage = Storage(str(tmp_path))
    path = storage.path("translate", "coyo", "_input", "00000.parquet")
    storage.write_parquet(path, pa.table({"key": ["a", "b"], "caption": ["A dog.", "A cat."]}))

    async def go():
        async with ChatClient([server.url], api_key_env="VLMIX_TEST_KEY") as client:  # model from /v1/models
            translator = Translator(storage, client, {"zh": Language(name="Chinese", scripts=["Han"])},
                                    TranslateSettings())
            return await translator.translate_source("coyo", [path], ["zh"])

    report = asyncio.run(go())["zh"]
    assert report.stats.translated == 2
    written = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert len(written) > 3 and not [p for p in written if key.encode() in p.read_bytes()]


def test_api_key_env_is_a_variable_name_for_configured_endpoints():
    def config(translation):
        return validate_config({
            "storage": {"root": "/tmp/unused"}, "tasks": {"captioning": {"share": 1.0}},
            "translation": {"endpoints": ["http://gpu1:8000/v1"], **translation},
            "sources": [{"name": "c", "kind": "url_list", "task": "captioning", "language": "en",
                         "locations": ["u.parquet"]}],
        })

    assert config({"api_key_env": "OPENAI_API_KEY"}).translation.api_key_env == "OPENAI_API_KEY"
    assert config({"api_key_env": {"http://gpu1:8000/v1/": "GPU1_KEY"}})
    with pytest.raises(ConfigError, match="not environment variable names"):
        config({"api_key_env": "sk-abc123-the-key-itself"})
    with pytest.raises(ConfigError, match="not in endpoints"):
        config({"api_key_env": {"http://gpu2:8000/v1": "GPU2_KEY"}})

