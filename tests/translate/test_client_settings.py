"""The client's settings travel from the config to every request as written: the translation stage's
Ray tasks build their client from the same options as the in-process path (one assembly,
``translate.client.client_options``), key included, without the key in the stage's context."""

from __future__ import annotations

import os

import pyarrow as pa

from flows.config import validate_config
from flows.translation import run_translation
from pipelines.storage import Storage
from tests.translate.translator_double import TranslatorDouble
from translate.settings import TranslateSettings

# Set at collection, before the session's Ray starts: keys reach Ray's workers through their environment only.
KEY_ENV = "VLMIX_TEST_DOUBLE_KEY"
os.environ.setdefault(KEY_ENV, "k-" + os.urandom(6).hex())


def test_every_worker_of_the_stage_sends_the_configured_key_and_translates_its_parts(tmp_path, local_ray):
    key = os.environ[KEY_ENV]
    double = TranslatorDouble(api_key=key, model="served-model")
    try:
        storage = Storage(str(tmp_path))
        for part in range(2):
            texts = [f"A red bus number {part}{row}." for row in range(3)]
            storage.write_parquet(storage.path("translate", "coyo", "_input", f"part-{part:05d}.parquet"),
                                  pa.table({"key": [f"{part}{r}" for r in range(3)], "field": ["caption"] * 3,
                                            "text": texts}))
        config = validate_config({
            "storage": {"root": str(tmp_path)}, "tasks": {"captioning": {"share": 1.0}},
            "languages": {"zh": {"name": "Chinese", "scripts": ["Han"]}},
            "translation": {"endpoints": [double.url], "model": "served-model", "concurrency": 2,
                            "api_key_env": KEY_ENV, "max_retries": 0},
            "sources": [{"name": "coyo", "kind": "url_list", "task": "captioning", "language": "en",
                         "translate_to": ["zh"], "locations": ["urls.parquet"]}]})
        reports = run_translation(config, TranslateSettings(workers=2, retry_backoff_s=0.05))
    finally:
        double.close()

    report = reports["coyo"]["zh"]
    assert report.parts_written == 2 and not report.failed
    assert report.stats.translated == 6
    assert set(double.authorizations) == {f"Bearer {key}"}
