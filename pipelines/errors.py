"""Which failures are worth another attempt: the one rule the executor and the flow both apply.

A configuration or data error (``ValueError`` and its kin such as pydantic's ``ValidationError``,
``KeyError``, ``TypeError``, a missing input file, a missing dependency) fails the same way every
time: it is never retried. A network error, a timeout, a server, engine or Ray worker that went
away may not recur: those are retried, by the executor per unit (:mod:`pipelines.stage`) and by the
flow per stage (``flows/retry.py``). Anything else is not.

Errors carry their nature as types, never as strings to match:

- a stage's own "try again" errors subclass :class:`TransientError`;
- a stage that gave up on some pieces while writing the others raises :class:`UnitsFailed`, which
  says itself whether those pieces' failures were transient;
- third-party types are named in :data:`TRANSIENT_NAMES` (nothing is imported to check them).

>>> is_transient(ConnectionResetError("peer went away")), is_transient(FileNotFoundError("in.json"))
(True, False)
"""

from __future__ import annotations

# Deterministic whatever their base class says (FileNotFoundError is an OSError, but a missing
# input does not appear by trying again).
DETERMINISTIC: tuple[type[BaseException], ...] = (
    ValueError, LookupError, TypeError, AttributeError, AssertionError, NotImplementedError, ImportError,
    FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError,
)
# Transient by type; OSError covers ConnectionError and TimeoutError (its subclasses).
TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError, EOFError)
# Transient types of the stages' libraries and of vlmix's own stages, by qualified name.
TRANSIENT_NAMES = frozenset({
    "translate.client.ServerUnavailable",  # the vLLM servers stayed unreachable past the client's retries
    "translate.launch.ServerStartError",  # a vLLM server exited or did not come up in time
    "translate.engine.EngineDied",  # an offline engine's process died with a batch in flight
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


class TransientError(Exception):
    """Trying again may succeed: the base of a stage's own errors of that nature."""


class UnitsFailed(RuntimeError):
    """Some units (or pieces of units) of a stage gave up; the others were written and are kept.

    ``failed`` maps each piece to its error message; ``transient`` says whether every one of those
    failures was transient, so that a rerun (which redoes only the failed pieces) may succeed.
    """

    def __init__(self, message: str, failed: dict[str, str], transient: bool):
        super().__init__(message)
        self.failed = dict(failed)
        self.transient = transient

    def __reduce__(self):  # survives pickling (Ray, Prefect) with its fields
        return type(self), (self.args[0], self.failed, self.transient)


def _names(error: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__}


def is_transient(error: BaseException) -> bool:
    """True when trying again may succeed. Wrapped errors (Ray's task errors) count as their cause."""
    if isinstance(error, UnitsFailed):
        return error.transient
    if isinstance(error, DETERMINISTIC):
        return False
    if isinstance(error, (*TRANSIENT, TransientError)) or _names(error) & TRANSIENT_NAMES:
        return True
    cause = error.__cause__ or getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return is_transient(cause)
    return False


def describe(error: BaseException) -> str:
    """``Type: last line of the message``: how a piece's failure is reported in counters and logs."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"
