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

import logging
import os
from pathlib import Path

from pipelines._imports import require

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


def run_tasks(function, calls: list[tuple], num_cpus: float = 1, retry_on: tuple = (ConnectionError, TimeoutError)):
    """``function(*args)`` for each ``args`` of ``calls``, yielded as each finishes: Ray tasks when Ray
    is up (``ensure_ray``), else in this process in order. Transient errors (``retry_on``) are retried
    by Ray; any other error is deterministic and fails at once."""
    import importlib.util

    if calls and importlib.util.find_spec("ray") is not None:
        import ray

        if ray.is_initialized():
            remote = ray.remote(num_cpus=num_cpus, max_retries=2, retry_exceptions=list(retry_on))(function)
            pending = [remote.remote(*args) for args in calls]
            try:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    try:
                        yield ray.get(ready[0])
                    except ray.exceptions.RayTaskError as err:  # the unit's own error, as raised there
                        raise (err.cause if isinstance(err.cause, BaseException) else err.as_instanceof_cause()) from None
            finally:
                for ref in pending:
                    ray.cancel(ref)
            return
    for args in calls:
        yield function(*args)
