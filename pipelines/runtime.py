"""Starting or joining Ray, the same way for every stage.

``ensure_ray(None)`` starts Ray on this machine and keeps it on loopback: its node address is
127.0.0.1, token auth is off, and nothing it runs reaches beyond the machine. Ray 2.60's usage-stats
module (loaded by the head even with the dashboard off and usage stats disabled) asks the cloud
metadata addresses (169.254.169.254, metadata.google.internal) which cloud it runs on, unless
``~/ray_bootstrap_config.yaml`` exists -- the file a ``ray up`` head has. So, before starting a
local head, vlmix writes an empty one when none is there (it only makes Ray skip that probe), and
points the "usage stats disabled" report, which a ``ray start`` head sends, at a closed loopback port.
``ensure_ray("auto")`` or ``ensure_ray("ray://head:10001")`` joins a cluster and changes nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import Counter, deque
from pathlib import Path

from pipelines._imports import require
from pipelines.errors import is_transient

log = logging.getLogger(__name__)

# Environment every vlmix process and Ray worker runs with.
WORKER_ENV = {
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations (via img2dataset) checks PyPI for updates on import
    "WANDB_MODE": "disabled",
    "WANDB_SILENT": "true",
    "DO_NOT_TRACK": "1",
}
# A closed port on loopback: reports Ray would send to its usage server go nowhere.
_NOWHERE = "http://127.0.0.1:9/"


# Where the object store is, forwarded to a cluster's workers. Credentials are not: nodes get them
# from their own roles or profiles, never from a driver's environment shown in Ray's job metadata.
_FORWARDED = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def worker_env() -> dict[str, str]:
    """The environment a cluster's Ray workers run vlmix stages with."""
    return {**WORKER_ENV, **{name: os.environ[name] for name in _FORWARDED if name in os.environ}}


def quiet_local_environment(single_node: bool = True) -> dict[str, str]:
    """Environment variables that keep a local Ray head (and its children) on this machine.

    ``single_node=False`` keeps Ray's multi-node support on, for several ``ray start`` nodes on
    one machine (tests of cluster behaviour); addresses then come from ``--node-ip-address``.
    """
    environment = {
        **WORKER_ENV,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": _NOWHERE,
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
        "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    }
    # Linux Ray finds "its" address by routing towards a public DNS server; one machine needs none.
    # Several nodes on one machine need the multi-node path on, whatever an earlier local start set.
    environment["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0" if single_node else "1"
    return environment


def block_cloud_metadata_probe(home: Path | None = None) -> Path:
    """Make sure ``~/ray_bootstrap_config.yaml`` exists so Ray's head skips the cloud metadata probe."""
    path = (home or Path.home()) / "ray_bootstrap_config.yaml"
    if not path.exists():
        path.write_text(
            "# Written by vlmix: its presence stops Ray's usage-stats module from probing cloud\n"
            "# metadata addresses when a local head starts. Empty on purpose; safe to delete.\n{}\n"
        )
    return path


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start local Ray (``address=None``) or connect to a cluster, once per process."""
    ray = require("ray", "download")
    if ray.is_initialized():
        return
    os.environ.update(WORKER_ENV)
    if address is None:
        os.environ.update(quiet_local_environment())
        block_cloud_metadata_probe()
        log.info("starting local Ray (loopback only)")
        ray.init(
            # "local", not None: with None, Ray joins the last cluster `ray start` made on this machine
            # (its address file in /tmp/ray), so a local run would land on someone else's cluster.
            address="local",
            include_dashboard=False,
            num_cpus=num_cpus,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
    else:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, runtime_env={"env_vars": worker_env()}, log_to_driver=False)


def shutdown_ray() -> None:
    ray = require("ray", "download")
    if ray.is_initialized():
        ray.shutdown()


def node_id() -> str:
    """The Ray node this code runs on (a worker's or the driver's), or ``local`` when Ray is not up."""
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    return "local"


def _ray_up():
    """The ``ray`` module when Ray is installed and initialised in this process, else None."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return None
    import ray

    return ray if ray.is_initialized() else None


def _unit_error(ray, err: BaseException) -> BaseException:
    """The unit's own error, as raised on the worker, from Ray's wrapper of it."""
    if isinstance(err, ray.exceptions.RayTaskError):
        err = err.cause if isinstance(err.cause, BaseException) else err.as_instanceof_cause()
    return err.error if isinstance(err, _TryAgain) else err


def run_tasks(function, calls: list[tuple], num_cpus: float = 1, shared: tuple = (),
              max_in_flight: int | None = None):
    """``function(*shared, *args)`` for each ``args`` of ``calls``, yielded as each finishes: Ray tasks
    when Ray is up (``ensure_ray``), else in this process in order. Transient errors
    (:func:`pipelines.errors.is_transient`) are retried by Ray; any other fails at once.

    ``shared`` arguments go to the object store once, not with every task (a stage and its context
    are the same for all its units). ``max_in_flight`` caps the tasks submitted at once (a rate
    limit: concurrent connections to a host, requests to a server fleet); None leaves it to the
    cluster's CPUs."""
    ray = _ray_up() if calls else None
    if ray is None:
        for args in calls:
            yield _retried(function, (*shared, *args))
        return
    remote = ray.remote(num_cpus=num_cpus, max_retries=_RETRIES, retry_exceptions=[_TryAgain])(_marking(function))
    refs = [ray.put(value) for value in shared]
    waiting = iter(calls)
    limit = max_in_flight or len(calls)
    pending = [remote.remote(*refs, *args) for args in itertools.islice(waiting, limit)]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            pending.extend(remote.remote(*refs, *args) for args in itertools.islice(waiting, 1))
            try:
                yield ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                raise _unit_error(ray, err) from None
    finally:
        for ref in pending:
            ray.cancel(ref)


class _PoolActor:
    """One member of an actor pool: builds its state (a model) on its first call and keeps it."""

    def __init__(self, setup, setup_args: tuple) -> None:
        self._setup = setup
        self._setup_args = setup_args
        self._state = None
        self._built = False

    def call(self, function, args: tuple):
        # Built here, not in __init__: a failing setup is then a call's error (retried when transient,
        # raised as itself when not), never an actor that died at creation.
        if not self._built:
            self._state = self._setup(*self._setup_args)
            self._built = True
        return function(self._state, *args)


def warn_if_short_of_gpus(ray, name: str, num_gpus: float) -> None:
    """Say so when no actor can start yet for want of GPUs: Ray then waits for them, it does not fail."""
    if not num_gpus:
        return
    free = ray.available_resources().get("GPU", 0.0)
    total = ray.cluster_resources().get("GPU", 0.0)
    if free < num_gpus:
        log.warning(
            "%s: each actor needs %g GPU(s); the cluster has %g free of %g. Waiting for GPUs "
            "(a GPU node joining or another job freeing one); the stage starts when they are there.",
            name, num_gpus, free, total,
        )


_RETRIES = 2  # a call that failed transiently, or lost its actor, runs at most this many more times


class _TryAgain(Exception):
    """Carries a transient error out of a Ray task, so that Ray (which retries by type) retries it."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


def _marking(function):
    """``function`` whose transient errors leave it as :class:`_TryAgain` (unwrapped by :func:`_unit_error`)."""
    def call(*args):
        try:
            return function(*args)
        except Exception as err:
            if is_transient(err):
                raise _TryAgain(err) from err
            raise

    call.__name__ = call.__qualname__ = getattr(function, "__name__", "call")
    return call


def _retried(function, args: tuple):
    """``function(*args)`` in this process, run again after a transient error, as Ray would."""
    for attempt in range(_RETRIES + 1):
        try:
            return function(*args)
        except Exception as err:
            if attempt == _RETRIES or not is_transient(err):
                raise
            log.warning("a call failed transiently (%s: %s); running it again (retry %d of %d)",
                        type(err).__name__, err, attempt + 1, _RETRIES)


def run_on_actors(setup, setup_args: tuple, function, calls: list[tuple], *, size: int = 1,
                  num_cpus: float = 1, num_gpus: float = 0, name: str = "stage"):
    """``function(state, *args)`` for each ``args`` of ``calls``, yielded as each finishes, on a pool of
    ``size`` Ray actors (``num_cpus``/``num_gpus`` each) that each build ``state = setup(*setup_args)``
    once and take one call at a time; in this process, with one ``state``, when Ray is not up.

    A call that fails with a transient error (:func:`pipelines.errors.is_transient`) runs again, on the first free actor; a call
    whose actor went away (its process or node died) runs again on a new actor that replaces it; each
    at most twice more. Any other error is deterministic and fails at once. The pool is killed when
    the caller stops iterating, however it stops."""
    ray = _ray_up() if calls else None
    if ray is None:
        if calls:
            state = setup(*setup_args)
            for args in calls:
                yield _retried(function, (state, *args))
        return
    warn_if_short_of_gpus(ray, name, num_gpus)
    member = ray.remote(_PoolActor).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0)
    actors = [member.remote(setup, setup_args) for _ in range(max(1, min(size, len(calls))))]
    queue, idle = deque(range(len(calls))), deque(actors)
    running: dict = {}  # object ref -> (the actor working on it, the call's index)
    retries: Counter = Counter()

    def again(index: int, error: BaseException, why: str) -> None:
        retries[index] += 1
        if retries[index] > _RETRIES:
            raise error from error.__cause__  # its own cause, if any; not Ray's wrapper of it
        log.warning("%s: a call %s (%s: %s); running it again (retry %d of %d)",
                    name, why, type(error).__name__, error, retries[index], _RETRIES)
        queue.appendleft(index)

    try:
        while queue or running:
            while queue and idle:
                actor, index = idle.popleft(), queue.popleft()
                running[actor.call.remote(function, calls[index])] = (actor, index)
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, index = running.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayActorError as err:  # the actor, or its node, went away
                ray.kill(actor)
                actors.remove(actor)
                actors.append(member.remote(setup, setup_args))
                idle.append(actors[-1])
                again(index, err, "lost its actor")
                continue
            except ray.exceptions.RayTaskError as err:
                idle.append(actor)
                error = _unit_error(ray, err)
                if not is_transient(error):
                    raise error from error.__cause__  # its own cause, if any; not Ray's wrapper of it
                again(index, error, "failed transiently")
                continue
            idle.append(actor)
            yield result
    finally:
        for actor in actors:
            ray.kill(actor)
