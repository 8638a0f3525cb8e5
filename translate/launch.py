"""Starting vLLM's OpenAI-compatible servers: one child process, or a fleet of them on the Ray cluster.

With endpoints configured, vlmix only connects. Without, :func:`launched_servers` starts one server
per tensor-parallel group of the cluster's GPUs (a Ray actor holding those GPUs runs
``python -m vllm.entrypoints.openai.api_server`` as its child), waits for each ``/health``, yields
their base URLs, and stops them on exit, also when the run fails. On a cluster without GPUs it
starts one CPU server (what the tests do with a tiny model).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipelines._imports import require
from translate.keys import new_key
from translate.settings import VllmServers

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[1]


class ServerStartError(RuntimeError):
    """A vLLM server exited or did not become healthy; the message ends with its log."""


def vllm_python(configured: str | None = None) -> str:
    """The interpreter that has vLLM: the setting, $VLMIX_VLLM_PYTHON, ./.venv-vllm, or this one."""
    if configured:
        return configured
    if os.environ.get("VLMIX_VLLM_PYTHON"):
        return os.environ["VLMIX_VLLM_PYTHON"]
    local = _REPO / ".venv-vllm" / "bin" / "python"
    return str(local) if local.exists() else sys.executable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class VllmProcess:
    """One vLLM OpenAI-compatible server as a child process of this one.

    >>> server = VllmProcess("/models/qwen", VllmServers(device="cpu", dtype="float32"))  # doctest: +SKIP
    >>> server.start(); server.wait_healthy(); server.url  # doctest: +SKIP
    'http://127.0.0.1:40123/v1'
    """

    def __init__(
        self,
        model: str,
        settings: VllmServers,
        host: str = "127.0.0.1",
        port: int | None = None,
        device: str = "cpu",
        log_path: str | None = None,
        api_key: str | None = None,
    ):
        self.model = model
        self.api_key = api_key  # VLLM_API_KEY of the server: its /v1 routes want it, /health does not
        self.settings = settings
        self.host = host
        self.port = port or free_port(host)
        self.device = device
        self.log_path = log_path or tempfile.mkstemp(prefix="vllm-", suffix=".log")[1]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        s = self.settings
        args = [vllm_python(s.python), "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        args += ["--host", self.host, "--port", str(self.port), "--dtype", s.dtype]
        if s.tensor_parallel_size > 1:
            args += ["--tensor-parallel-size", str(s.tensor_parallel_size)]
        if s.max_model_len:
            args += ["--max-model-len", str(s.max_model_len)]
        if s.gpu_memory_utilization:
            args += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
        if self.device == "cpu" and "--enforce-eager" not in s.extra_args:
            args.append("--enforce-eager")  # CPU graph compilation takes minutes and gains nothing here
        return args + list(s.extra_args)

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **self.settings.env}
        if self.api_key:  # in the environment, not on the command line, which ps and vLLM's log show
            env["VLLM_API_KEY"] = self.api_key
        if self.device == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; the CPU build's default is large
        return env

    def start(self) -> None:
        if self.running():
            return
        with open(self.log_path, "ab") as sink:
            # Its own session: stopping it reaches every process vLLM forks (engine core, workers).
            self.process = subprocess.Popen(
                self.command(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
            )
        log.info("started vLLM (pid %d) on %s, log %s", self.process.pid, self.url, self.log_path)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout_s: float | None = None) -> str:
        """Block until ``/health`` answers 200; return the base URL. Raises if the server dies first."""
        deadline = time.monotonic() + (timeout_s or self.settings.startup_timeout_s)
        while time.monotonic() < deadline:
            if not self.running():
                raise ServerStartError(
                    f"vLLM exited with code {self.process and self.process.poll()}\n{self.log_tail()}"
                )
            if self.healthy():
                return self.url
            time.sleep(0.5)
        raise ServerStartError(f"vLLM on {self.url} not healthy after {timeout_s} s\n{self.log_tail()}")

    def stop(self, grace_s: float = 15.0, kill: bool = False) -> None:
        """Stop the server and its children (SIGTERM, SIGKILL after ``grace_s``; at once if ``kill``)."""
        if not self.running():
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # children that outlived the leader

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
        return ""


def _server_actor_class():
    ray = require("ray", "translate")

    @ray.remote
    class VllmServerActor:
        """Holds the GPUs of one server on its node and runs the server as a child process."""

        def __init__(self, model: str, settings: VllmServers, device: str, api_key: str | None = None):
            host = ray.util.get_node_ip_address()
            self.server = VllmProcess(model, settings, host=host, device=device, api_key=api_key)

        def start(self) -> str:
            self.server.start()
            try:
                return self.server.wait_healthy()
            except ServerStartError:
                self.server.stop(kill=True)
                raise

        def stop(self) -> None:
            self.server.stop()

        def kill(self) -> None:
            """SIGKILL the server at once, as a crash would (for drills and tests)."""
            self.server.stop(kill=True)

    return VllmServerActor


class ServerFleet:
    """The servers :func:`launched_servers` started: their base URLs, their actors, and the run's key
    (every request to them needs it: ``ChatClient(fleet.urls, api_key=fleet.api_key)``)."""

    def __init__(self, actors: list, urls: list[str], api_key: str | None = None):
        self.actors = actors
        self.urls = urls
        self.api_key = api_key

    def __repr__(self) -> str:
        return f"ServerFleet(urls={self.urls})"

    def kill(self, index: int) -> None:
        """Crash server ``index`` (SIGKILL); :meth:`restart` brings it back on the same port."""
        ray = require("ray", "translate")
        ray.get(self.actors[index].kill.remote())

    def restart(self, index: int) -> str:
        """Start server ``index`` again (same node and port) and wait until it is healthy."""
        ray = require("ray", "translate")
        return ray.get(self.actors[index].start.remote())


def plan_servers(settings: VllmServers, cluster_gpus: float) -> tuple[str, int]:
    """(device, number of servers) for a cluster with ``cluster_gpus`` GPUs."""
    device = settings.device
    if device == "auto":
        device = "cuda" if cluster_gpus >= settings.tensor_parallel_size else "cpu"
    if device == "cpu":
        return device, settings.servers or 1
    groups = int(cluster_gpus // settings.tensor_parallel_size)
    if groups < 1:
        raise ServerStartError(
            f"device cuda with tensor_parallel_size {settings.tensor_parallel_size}, but the cluster has "
            f"{cluster_gpus:g} GPUs"
        )
    return device, min(settings.servers or groups, groups)


@contextlib.contextmanager
def launched_servers(
    model: str, settings: VllmServers, ray_address: str | None = None, api_key: str | None = None
) -> Iterator[ServerFleet]:
    """Start vLLM servers on the Ray cluster, yield them (``fleet.urls``), stop them on exit.

    They bind the node's address, so they want a key: ``api_key``, or a random one made for this run
    (``fleet.api_key``), which only the run's request senders are given.

    >>> with launched_servers("/models/qwen2-7b-instruct", VllmServers(tensor_parallel_size=2)) as fleet:  # doctest: +SKIP
    ...     print(fleet.urls)
    """
    ray = require("ray", "translate")
    from pipelines.runtime import ensure_ray

    ensure_ray(ray_address)
    device, count = plan_servers(settings, ray.cluster_resources().get("GPU", 0))
    gpus = settings.tensor_parallel_size if device == "cuda" else 0
    actor_class = _server_actor_class().options(num_gpus=gpus, num_cpus=settings.cpus_per_server)
    api_key = api_key or new_key()
    actors = [actor_class.remote(model, settings, device, api_key) for _ in range(count)]
    log.info("starting %d vLLM server(s) on %s for %s", count, device, model)
    try:
        urls = ray.get([actor.start.remote() for actor in actors], timeout=settings.startup_timeout_s + 60)
        yield ServerFleet(actors, urls, api_key)
    finally:
        with contextlib.suppress(Exception):
            ray.get([actor.stop.remote() for actor in actors], timeout=60)
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
