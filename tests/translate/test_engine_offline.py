"""The translation stage on vLLM's offline engine (``translation.stage.vllm.engine: offline``).

Real ``vllm.LLM`` engines from ./.venv-vllm serve the tests' tiny random model. What a user relies
on: the offline path writes what the HTTP path writes (same rows, same answers: greedy on the same
model), a part reaches the engine as one batch, an input vLLM refuses is flagged on its own row
while the rest of the batch is translated, and an engine that dies mid-run is replaced without a
lost or doubled row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time

import pytest

from flows.config import validate_config
from flows.translation import run_translation
from pipelines.languages import Language
from pipelines.stage import execute
from tests.translate.conftest import require_vllm, server_settings
from tests.translate.test_stage_vllm import (
    SETTINGS,
    assert_rows_preserved,
    captions,
    make_config,
    outputs,
    write_inputs,
)
from translate.engine import EngineClient, OfflineEngine
from translate.stage import TranslateContext, TranslationActors
from translate.translator import Translator

pytestmark = pytest.mark.slow

ZH = Language(name="Chinese", scripts=["Han"])


def offline_settings(**update):
    vllm = server_settings().model_copy(update={"engine": "offline"})
    return SETTINGS.model_copy(update={"vllm": vllm, "cache": False, **update})


@pytest.fixture(scope="module")
def engine(tiny_model):
    require_vllm()
    with OfflineEngine(str(tiny_model), offline_settings().vllm, device="cpu") as running:
        yield running


def test_the_offline_engine_writes_what_the_server_writes(tmp_path, tiny_model, vllm_url, local_ray):
    parts = [captions(14, offset=14 * i) + ["", "  "] for i in range(3)]
    results = {}
    for path, url, settings in (("server", vllm_url, SETTINGS.model_copy(update={"cache": False})),
                                ("offline", None, offline_settings())):
        storage = write_inputs(tmp_path / path, "coyo", parts)
        config = make_config(tmp_path / path, url, model=str(tiny_model))
        report = run_translation(config, settings)["coyo"]["zh"]
        assert (report.parts_written, report.failed) == (3, {})
        rows = assert_rows_preserved(storage, "zh", parts)
        results[path] = ([(r["key"], r["raw_output"], r["error"], r["origin"]) for r in rows], report.stats)
    (server_rows, server_stats), (offline_rows, offline_stats) = results["server"], results["offline"]
    assert offline_rows == server_rows  # greedy on the same model: the same answer for every row
    assert sum(1 for _, raw, _, _ in offline_rows if raw) == 3 * 14  # empty sources are not asked
    assert offline_stats.requests == server_stats.requests == sum(len(set(p) - {"", "  "}) for p in parts)
    assert offline_stats.flagged == server_stats.flagged


def test_a_part_reaches_the_engine_as_one_batch_for_every_target(tmp_path, engine, tiny_model):
    parts = [captions(40)]
    storage = write_inputs(tmp_path, "coyo", parts)
    languages = {"zh": ZH, "ja": Language(name="Japanese", scripts=["Han", "Hiragana", "Katakana"])}

    async def translate():
        async with EngineClient(engine, str(tiny_model)) as client:
            translator = Translator(storage, client, languages, offline_settings())
            reports = await translator.translate_source(
                "coyo", storage.glob(storage.path("translate", "coyo", "_input", "*.parquet")), ["zh", "ja"])
            return client, reports

    client, reports = asyncio.run(translate())
    distinct = len(set(parts[0]))
    assert client.requests == 2 * distinct and client.batches == 1
    for target in ("zh", "ja"):
        assert reports[target].parts_written == 1 and reports[target].stats.requests == distinct
        assert_rows_preserved(storage, target, parts)


def test_an_input_the_engine_refuses_is_flagged_and_its_batch_is_translated(tmp_path, engine, tiny_model):
    too_long = " ".join(["a dog on the beach under a tree"] * 400)  # far beyond max_model_len (1024 tokens)
    parts = [captions(6) + [too_long]]
    storage = write_inputs(tmp_path, "coyo", parts)

    async def translate():
        async with EngineClient(engine, str(tiny_model)) as client:
            return await Translator(storage, client, {"zh": ZH}, offline_settings()).translate_source(
                "coyo", storage.glob(storage.path("translate", "coyo", "_input", "*.parquet")), ["zh"])

    report = asyncio.run(translate())["zh"]
    rows = assert_rows_preserved(storage, "zh", parts)
    assert rows[-1]["error"] == "request_rejected_400" and rows[-1]["raw_output"] is None
    assert all(row["raw_output"] for row in rows[:-1])  # the rest of the batch was answered
    assert report.failed == {} and engine.alive()


def _engine_processes(workers_only: bool = False) -> list[int]:
    """Pids of the Ray actors' engine processes: each engine worker and what it started (its
    guardian, vLLM's engine core and workers, the resource tracker), found by the engine spec in
    their environment. A worker is an ``engine_worker.py`` whose parent is not one (its guardian's
    is). Not this module's own engine (a child of this process) nor its process group."""
    entries = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if not any(v.startswith(b"VLMIX_ENGINE_SPEC=") for v in f.read().split(b"\0")):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                worker = any(part.endswith(b"engine_worker.py") for part in f.read().split(b"\0"))
            with open(f"/proc/{entry}/stat") as f:
                state, parent, group = f.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z":
            entries.append((int(entry), int(parent), int(group), worker))
    own = {pid for pid, parent, _, _ in entries if parent == os.getpid()}
    scripts = {pid for pid, _, _, worker in entries if worker}
    return [pid for pid, parent, group, worker in entries
            if pid not in own and group not in own
            and (not workers_only or (worker and parent not in scripts))]


def test_an_engine_killed_mid_run_is_replaced_and_no_row_is_lost_or_doubled(tmp_path, tiny_model, local_ray):
    require_vllm()
    parts = [captions(30, offset=30 * i) for i in range(5)]
    storage = write_inputs(tmp_path, "coyo", parts)
    settings = offline_settings()
    plan = {"coyo": (storage.glob(storage.path("translate", "coyo", "_input", "*.parquet")), ["zh"])}
    ctx = TranslateContext(storage.root_uri(), storage.options, settings,
                           {"zh": ZH}, ())
    killed = []

    def kill_after_the_first_part():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not outputs(storage, "zh"):
            time.sleep(0.05)
        for pid in _engine_processes(workers_only=True):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_after_the_first_part, daemon=True)
    killer.start()
    report = execute(TranslationActors(plan, settings, str(tiny_model), "cpu", engines=1), ctx)
    killer.join(timeout=5)
    assert killed, "the engine was never seen running"
    assert_rows_preserved(storage, "zh", parts)  # every part written once, each row once
    assert report.counters.tallies["parts_written"]["zh"] + report.counters.tallies["parts_skipped"]["zh"] == 5
    assert report.counters.tallies["engine_restarts"]["engines"] >= 1
    assert not report.counters.failed
    deadline = time.monotonic() + 60  # the pool is gone: its engines with it, and all they started
    while _engine_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _engine_processes()
    for pid in left:  # so that a failure here does not starve the tests after it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} engine processes outlived the pool"


def test_server_flags_on_the_offline_engine_fail_at_validate(tmp_path):
    config = make_config(tmp_path, None, model="/models/m")
    raw = config.model_dump(mode="json")
    raw["translation"]["stage"]["vllm"] = {"engine": "offline", "extra_args": ["--enforce-eager"]}
    with pytest.raises(ValueError, match="extra_args .* are vLLM server flags.*engine_kwargs"):
        validate_config(raw)
    raw["translation"]["stage"]["vllm"] = {"engine": "server", "extra_args": ["--enforce-eager"]}
    assert validate_config(raw).translation.stage.vllm.engine == "server"
