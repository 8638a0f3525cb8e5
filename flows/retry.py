"""Which stage failures the flow tries again: the foundation's one rule, as Prefect's retry condition.

What is transient is decided in one place, :func:`pipelines.errors.is_transient`, which the executor
also applies to every unit: a configuration or data error fails its task at once, with the message;
a network error, a timeout, a server or Ray worker that went away is retried.

:func:`transient` is the flow's tasks' Prefect ``retry_condition_fn``.
"""

from __future__ import annotations

import logging
from typing import Any

from pipelines.errors import is_transient

log = logging.getLogger(__name__)

__all__ = ["is_transient", "transient"]


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry the task only when its exception is transient."""
    from pipelines.progress import stage_event

    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        return False
    retry = is_transient(error)
    kind = "transient, retried" if retry else "deterministic, not retried"
    log.info("task %s failed with %s (%s)", task.name, type(error).__name__, kind)
    if retry:
        stage_event(task.name, "retrying", error=f"{type(error).__name__}: {error}")
    return retry
