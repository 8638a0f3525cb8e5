"""Deterministic errors fail a stage's task at once; transient ones are retried (real Prefect runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flows.retry import is_transient

REPO = Path(__file__).resolve().parents[2]


def test_which_errors_are_transient():
    from pydantic import BaseModel

    from flows.config import ConfigError
    from translate.client import ServerUnavailable

    class Model(BaseModel):
        n: int

    try:
        Model(n="x")
    except ValueError as err:
        validation = err
    wrapped = RuntimeError("stage failed")
    wrapped.__cause__ = ConnectionResetError("peer went away")
    deterministic = [ValueError("bad"), ConfigError("my.yaml", ["download.timeout_s: got 0"]), KeyError("k"), TypeError("t"), validation,
                     FileNotFoundError("no input"), PermissionError("no"), ImportError("missing extra"),
                     RuntimeError("a bug")]
    transient = [ConnectionError("refused"), TimeoutError(), OSError(5, "I/O error"), BrokenPipeError(),
                 ServerUnavailable("gone"), wrapped]
    assert [e for e in deterministic if is_transient(e)] == []
    assert [e for e in transient if not is_transient(e)] == []


def test_every_stage_task_uses_the_retry_condition():
    from flows import build_pretrain_mix as module
    from flows.retry import transient

    tasks = list(module.TASKS.values())
    assert all(t.retry_condition_fn is transient for t in tasks)
    assert all(t.retries >= 1 for t in tasks)


def _task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    return asyncio.run(read())


def test_a_missing_input_fails_the_download_task_at_once(tmp_path, prefect_ephemeral):
    """A FileNotFoundError raised inside the stage: one attempt, not three; the message names the file."""
    from flows.build_pretrain_mix import build_pretrain_mix

    missing = tmp_path / "nowhere.parquet"
    overrides = [f"storage.root={tmp_path / 'root'}", f"demo.directory={tmp_path / 'demo'}", "demo.scale=0.02",
                 f"sources.0.locations=[{missing}]"]
    state = build_pretrain_mix(config=str(REPO / "configs" / "demo.yaml"), stages=["download"],
                               overrides=overrides, return_state=True)
    assert state.is_failed()
    with pytest.raises(FileNotFoundError, match="nowhere.parquet"):
        state.result()
    (download,) = _task_runs(state.state_details.flow_run_id)
    assert download.name.startswith("download") and download.state.is_failed()
    assert download.run_count == 1  # the task has retries=2: a deterministic error used none


def test_a_transient_error_is_retried_and_a_deterministic_one_is_not(prefect_ephemeral):
    from prefect import flow, task

    from flows.retry import transient

    attempts = {"flaky": 0, "broken": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=transient)
    def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ConnectionResetError("the server went away")
        return "ok"

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=transient)
    def broken() -> None:
        attempts["broken"] += 1
        raise KeyError("field 'caption' missing")

    @flow
    def both() -> str:
        result = flaky()
        broken()
        return result

    state = both(return_state=True)
    assert state.is_failed()
    with pytest.raises(KeyError, match="caption"):
        state.result()
    assert attempts == {"flaky": 2, "broken": 1}
