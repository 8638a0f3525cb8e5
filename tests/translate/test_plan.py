"""``vlmix translate --plan``: what a run will ask, before it asks, checked against the run itself.

The endpoint is :class:`TranslatorDouble` (a test double of an OpenAI-compatible server on loopback);
the tokenizer is the tiny model's, built here (tests/translate/conftest.py).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import yaml
from transformers import AutoTokenizer

from flows import translate_cli as cli
from flows.config import load_config
from flows.translation import plan_translation, run_translation
from pipelines.storage import Storage
from tests.translate.translator_double import TranslatorDouble, word_for_word
from translate.cache import CachedAnswer, open_cache, text_hash
from translate.prompt import build_messages
from translate.settings import TranslateSettings

PARTS = [
    ["A dog on a beach.", "A red bus.", "A dog on a beach.", ""],
    ["A red bus.", "Two cats under a tree.", "A dog on a beach."],
]
TURNS = [{"from": "human", "value": "<image>\nWhat is in the picture?"}, {"from": "gpt", "value": "A red bus."}]


@pytest.fixture
def double():
    server = TranslatorDouble()
    yield server
    server.close()


def write_config(tmp_path, model: str | None, endpoint: str) -> str:
    storage = Storage(str(tmp_path / "root"))
    for index, texts in enumerate(PARTS):
        rows = {"key": [f"{index}-{i}" for i in range(len(texts))], "field": ["caption"] * len(texts), "text": texts}
        if index == 1:  # a whole conversation: its pieces are asked like captions
            rows = {k: v + [extra] for (k, v), extra in zip(rows.items(), ["1-c", "conversations", json.dumps(TURNS)], strict=True)}
        storage.write_parquet(storage.path("translate", "web", "_input", f"part-{index:05d}.parquet"), pa.table(rows))
    config = {
        "storage": {"root": str(tmp_path / "root")},
        "tasks": {"captioning": {"share": 1.0}},
        "languages": {"en": {"name": "English", "scripts": ["Latin"]}, "zh": {"name": "Chinese", "scripts": ["Han"]},
                      "ja": {"name": "Japanese", "scripts": ["Han", "Hiragana", "Katakana"]}},
        "translation": {"endpoints": [endpoint], **({"model": model} if model else {})},
        "sources": [{"name": "web", "kind": "url_list", "task": "captioning", "language": "en",
                     "translate_to": ["zh", "ja"], "locations": ["u.parquet"]}],
    }
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_plan_counts_what_the_run_asks_and_its_prompt_tokens(tmp_path, tiny_model, double):
    config = load_config(write_config(tmp_path, str(tiny_model), double.url))
    settings = TranslateSettings()
    # The cache already holds one Chinese answer: the plan leaves it out of zh's requests only.
    storage = config.storage.open()
    open_cache(storage, settings, str(tiny_model)).add("zh", [(text_hash("A red bus."), "A red bus.",
                                                            CachedAnswer("一辆红色公共汽车。", "stop"))])

    plans, how = plan_translation(config, settings)
    assert str(tiny_model) in how and double.times == [] and double.authorizations == []  # nothing asked

    # By hand: 6 captions (one blank left out) + the conversation's 2 pieces; distinct: dog, bus, cats, the question.
    asked = ["A dog on a beach.", "A red bus.", "Two cats under a tree.", "What is in the picture?"]
    assert {t: (p.texts, p.distinct, p.uncached) for t, p in plans.items()} == {"zh": (8, 4, 3), "ja": (8, 4, 4)}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for target, language, texts in (("zh", "Chinese", [t for t in asked if t != "A red bus."]), ("ja", "Japanese", asked)):
        prompts = [tokenizer.apply_chat_template(build_messages(t, language), add_generation_prompt=True,
                                                 tokenize=True) for t in texts]
        assert plans[target].prompt_tokens == sum(len(p["input_ids"] if isinstance(p, dict) else p) for p in prompts)
        assert plans[target].answer_tokens == sum(len(tokenizer(t, add_special_tokens=False)["input_ids"])
                                                  for t in texts)
        assert plans[target].answer_budget == sum(max(32, len(t)) for t in texts)  # 1 token a char, at least 32

    reports = run_translation(config, settings)  # the run asks what the plan said, no more
    assert {t: r.stats.requests for t, r in reports["web"].items()} == {"zh": 3, "ja": 4}
    assert sorted(double.asked) == sorted(asked) and sum(double.asked.values()) == 7
    # The run's cost, from the server's `usage` (the double counts words in and characters out).
    zh_texts = [t for t in asked if t != "A red bus."]
    cost = reports["web"]["zh"].cost
    assert (cost.requests, cost.prompt_tokens, cost.completion_tokens) == (
        3, sum(len(t.split()) for t in zh_texts), sum(len(word_for_word(t)) for t in zh_texts))
    written = json.loads((tmp_path / "root" / "translate" / "web" / "zh" / "stats.json").read_text())
    assert written["run"]["requests"] == 3 and written["run"]["tokens_per_s"] > 0
    assert written["run"]["tokens_per_request"] == {"prompt": round(cost.prompt_tokens / 3, 1),
                                                    "completion": round(cost.completion_tokens / 3, 1)}
    assert written["prompt_tokens"] == cost.prompt_tokens  # summed over the parts' own stats
    # Planned again after the run: everything is cached now.
    again, _ = plan_translation(config, settings)
    assert {t: (p.distinct, p.uncached, p.prompt_tokens) for t, p in again.items()} == {"zh": (4, 0, 0), "ja": (4, 0, 0)}
    assert not list((tmp_path / "root" / "translate" / "_plan").glob("*"))  # the plan's scratch is removed


def test_the_cli_prints_the_plan_and_sends_nothing(tmp_path, double, capsys, local_ray):
    path = write_config(tmp_path, None, double.url)  # no model named: tokens estimated, cache not consulted
    assert cli.main(["--config", path, "--plan", "--target", "zh"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["target", "texts", "distinct", "to"]
    assert out[1].split()[:4] == ["zh", "8", "4", "4"]
    assert "tokens estimated" in out[-1] and "cache not consulted" in out[-1]
    assert double.times == [] and double.authorizations == []

    assert cli.main(["--config", path, "--plan", "--tokenizer", str(tmp_path)]) == 2  # not a tokenizer folder
