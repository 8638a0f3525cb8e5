"""Which stage failures are worth another attempt: transient ones only.

A configuration or data error (``ValueError`` and its kin such as ``ConfigError`` and pydantic's
``ValidationError``, ``KeyError``, ``TypeError``, a missing input file, a missing dependency) fails
the same way every time: its task fails at once, with the message. A network error, a timeout, a
server or Ray worker that went away may not recur: those are retried. Anything else is not.

:func:`transient` is the flow's tasks' Prefect ``retry_condition_fn``.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# Deterministic whatever their base class says (FileNotFoundError is an OSError, but a missing
# input does not appear by trying again).
DETERMINISTIC: tuple[type[BaseException], ...] = (
    ValueError, LookupError, TypeError, AttributeError, AssertionError, NotImplementedError, ImportError,
    FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError,
)
# Transient by type; OSError covers ConnectionError and TimeoutError (its subclasses).
TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError, EOFError)
# Transient types of libraries the stages use, by qualified name (nothing is imported to check them).
TRANSIENT_NAMES = frozenset({
    "translate.client.ServerUnavailable",  # the vLLM servers stayed unreachable past the client's retries
    "translate.launch.ServerStartError",  # a vLLM server exited or did not come up in time
    "aiohttp.client_exceptions.ClientError",
    "httpx.TransportError",
    "ray.exceptions.RayActorError",
    "ray.exceptions.ActorUnavailableError",
    "ray.exceptions.WorkerCrashedError",
    "ray.exceptions.NodeDiedError",
    "ray.exceptions.ObjectLostError",
    "ray.exceptions.OwnerDiedError",
    "ray.exceptions.RaySystemError",
    "ray.exceptions.GetTimeoutError",
    "ray.exceptions.OutOfMemoryError",
    "ray.exceptions.ObjectStoreFullError",
})


def _names(error: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__}


def is_transient(error: BaseException) -> bool:
    """True when trying again may succeed. Ray's wrapped task errors count as their cause."""
    if isinstance(error, DETERMINISTIC):
        return False
    if isinstance(error, TRANSIENT) or _names(error) & TRANSIENT_NAMES:
        return True
    cause = error.__cause__ or getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return is_transient(cause)
    return False


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
