"""Shared fixtures: a local Ray for the session, and generated demo sources served on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports img2dataset (albumentations would ask PyPI for updates otherwise).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]

# The files that take minutes, longest first: scripts/test.sh hands whole files to two workers in
# collection order, so these start first and the two workers finish together (not one of them alone
# on the last long file). Measured on 2 cores; order only, nothing is skipped.
LONG_FIRST = (
    "tests/flows/test_launcher.py",
    "tests/scale/test_cluster.py",
    "tests/translate/test_engine_offline.py",
    "tests/flows/test_stop.py",
    "tests/scale/test_object_storage.py",
    "tests/download/test_download.py",
    "tests/pipelines/test_pretrain_config.py",
    "tests/translate/test_stage_vllm.py",
    "tests/trainer/test_train.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: number for number, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keeps its order


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray per test session (starting one takes seconds), loopback only."""
    from pipelines.runtime import ensure_ray, shutdown_ray

    ensure_ray(None, num_cpus=2)
    yield
    shutdown_ray()


@pytest.fixture(scope="module")
def prefect_ephemeral(tmp_path_factory):
    """Flows run against Prefect's ephemeral server in a home of their own, with no API URL set."""
    saved = dict(os.environ)
    os.environ.update({"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                       # The ephemeral server gets 20 s to start by default: too little on 2 busy cores.
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
    os.environ.pop("PREFECT_API_URL", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def demo_directory(tmp_path_factory) -> Path:
    """Small demo collections (about 300 rows), generated once per session."""
    from flows.demo import generate

    return generate(tmp_path_factory.mktemp("demo-sources"), seed=7, scale=0.1, bad_url_share=0.25)


@pytest.fixture
def loopback_s3(monkeypatch):
    """moto's S3 server on 127.0.0.1, with the AWS variables pointing at it; yields its endpoint URL."""
    import logging

    moto_server = pytest.importorskip("moto.server")
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    S3FileSystem.clear_instance_cache()
    try:
        yield endpoint
    finally:
        S3FileSystem.clear_instance_cache()
        server.stop()
