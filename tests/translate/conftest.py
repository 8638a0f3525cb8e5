"""Fixtures of the translation tests: a tiny Qwen2 model built here, a real vLLM server on loopback.

The model has random weights (its answers are noise) and a BPE tokenizer trained here on English
text only, so whatever it says is in Latin script. Nothing is downloaded. vLLM runs from its own
environment, ./.venv-vllm, which ``scripts/setup_vllm.sh`` creates.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from translate.keys import new_key
from translate.tiny_model import CHAT_TEMPLATE, build_tiny_model  # noqa: F401 - used by the tests

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# The session's vLLM server wants a key, as every server vlmix starts does. It is random per session
# and set here, at collection, so that it is in the environment of Ray's workers (started later):
# configs name it with translation.api_key_env, as a user names the key of their own servers.
FLEET_KEY_ENV = "VLMIX_TEST_VLLM_KEY"
os.environ.setdefault(FLEET_KEY_ENV, new_key())

@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


def server_settings():
    from translate.settings import VllmServers

    return VllmServers(
        python=str(VLLM_PYTHON),
        device="cpu",
        dtype="float32",
        max_model_len=1024,
        env={"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"},
        startup_timeout_s=240,
        cpus_per_server=0,  # the tests' local Ray has 2 CPUs, which other tests need
    )


def require_vllm() -> None:
    if not VLLM_PYTHON.exists():
        pytest.skip(
            f"{VLLM_PYTHON} is missing: create it with scripts/setup_vllm.sh (vLLM's own environment)"
        )


@pytest.fixture(scope="session")
def vllm_fleet(tiny_model, local_ray):
    """One real vLLM server (CPU) for the session, started by vlmix itself on the local Ray cluster."""
    require_vllm()
    from translate.launch import launched_servers

    with launched_servers(str(tiny_model), server_settings(), api_key=os.environ[FLEET_KEY_ENV]) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def vllm_url(vllm_fleet) -> str:
    return vllm_fleet.urls[0]
