"""vLLM's offline engine for the translation stage, when vlmix runs the model itself: no HTTP hop.

:class:`OfflineEngine` runs ``vllm.LLM`` in a child process of vLLM's own interpreter
(:mod:`translate.engine_worker`; vLLM's pins never meet the pipeline's) and hands it whole batches
over a Unix socket. :class:`EngineClient` is what :class:`translate.translator.Translator` talks to in
place of :class:`translate.client.ChatClient`: its ``chat`` calls are gathered into one batch per
turn of the event loop (a part's distinct texts, for every target, arrive together), so vLLM sees
the whole part at once and batches it continuously, as ``LLM.chat`` on a list does. Measured
against the HTTP server in ``bench/README.md`` (translation: stage against vLLM's offline engine).

>>> with OfflineEngine("/models/qwen2-7b-instruct", VllmServers(), device="cuda") as engine:  # doctest: +SKIP
...     [reply] = engine.generate([build_messages("A red bus.", "Chinese")], [{"temperature": 0, "max_tokens": 64}])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from multiprocessing.connection import Client
from pathlib import Path

from translate.client import Rejected, Reply
from translate.launch import ServerStartError, vllm_python
from translate.settings import VllmServers

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("engine_worker.py")


class EngineDied(ConnectionError):
    """The engine's process exited while a batch was in flight (transient: a new engine redoes it)."""


class EngineError(RuntimeError):
    """The engine answered a batch with an error that is not about one input."""


def engine_kwargs(settings: VllmServers, device: str) -> dict:
    """``vllm.LLM`` keyword arguments from the settings the server path turns into flags."""
    kwargs: dict = {"dtype": settings.dtype}
    if settings.tensor_parallel_size > 1:
        kwargs["tensor_parallel_size"] = settings.tensor_parallel_size
    if settings.max_model_len:
        kwargs["max_model_len"] = settings.max_model_len
    if settings.gpu_memory_utilization:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if device == "cpu":
        kwargs["enforce_eager"] = True  # CPU graph compilation takes minutes and gains nothing here
    return {**kwargs, **settings.engine_kwargs}


class OfflineEngine:
    """One ``vllm.LLM`` in a child process; ``generate`` sends it a batch and waits for the answers."""

    def __init__(self, model: str, settings: VllmServers, device: str = "cpu", log_path: str | None = None):
        self.model = model
        self.settings = settings
        self.device = device
        self.log_path = log_path or tempfile.mkstemp(prefix="vllm-engine-", suffix=".log")[1]
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._conn = None
        self._lock = threading.Lock()
        self._folder: str | None = None

    def __enter__(self) -> OfflineEngine:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def environment(self, address: str, authkey: str) -> dict[str, str]:
        env = {**os.environ, **self.settings.env}
        if self.device == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; the CPU build's default is large
        spec = {"model": self.model, "engine": engine_kwargs(self.settings, self.device),
                "address": address, "authkey": authkey}
        env["VLMIX_ENGINE_SPEC"] = json.dumps(spec)
        return env

    def start(self) -> None:
        """Start the child and wait until its model is loaded (``settings.startup_timeout_s``)."""
        if self.alive():
            return
        self.stop()
        self._folder = tempfile.mkdtemp(prefix="vlmix-engine-")
        address, authkey = os.path.join(self._folder, "engine.sock"), secrets.token_hex(16)
        with open(self.log_path, "ab") as sink:
            self.process = subprocess.Popen(
                [vllm_python(self.settings.python), str(WORKER)], stdout=sink, stderr=subprocess.STDOUT,
                env=self.environment(address, authkey), start_new_session=True)
        self.starts += 1
        log.info("started vLLM's offline engine (pid %d) for %s, log %s", self.process.pid, self.model,
                 self.log_path)
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(f"vLLM's engine exited with code {self.process.returncode} while "
                                       f"loading {self.model}\n{self.log_tail()}")
            if os.path.exists(address):  # the worker listens once its model is loaded
                with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
                    self._conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(authkey))
                    return
            time.sleep(0.2)
        self.stop()
        raise ServerStartError(f"vLLM's engine did not load {self.model} within "
                               f"{self.settings.startup_timeout_s} s\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and self._conn is not None

    def generate(self, conversations: list[list[dict]], params: list[dict]) -> list[Reply | Rejected]:
        """One batch through ``LLM.chat``: a reply per conversation, or :class:`Rejected` for an input
        vLLM refused. Raises :class:`EngineDied` if the process goes away meanwhile."""
        if not conversations:
            return []
        with self._lock:
            if not self.alive():
                raise EngineDied(f"vLLM's engine is not running\n{self.log_tail()}")
            try:
                self._conn.send({"op": "chat", "conversations": conversations, "params": params})
                while not self._conn.poll(1.0):
                    if self.process.poll() is not None:
                        raise EOFError
                answer = self._conn.recv()
            except (EOFError, OSError) as err:
                code = self.process.poll()
                self._close()
                raise EngineDied(f"vLLM's engine went away during a batch (exit code {code})\n"
                                 f"{self.log_tail()}") from err
        if "error" in answer:
            raise EngineError(answer["error"])
        return [Rejected(400, out["rejected"]) if isinstance(out, dict) else Reply(*out)
                for out in answer["outputs"]]

    def stop(self, grace_s: float = 30.0) -> None:
        """Ask the worker to stop (it shuts vLLM down), then SIGTERM/SIGKILL its process group."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send({"op": "stop"})
        self._close()
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # engine-core processes that outlived it
        if self._folder:
            with contextlib.suppress(OSError):
                for name in os.listdir(self._folder):
                    os.unlink(os.path.join(self._folder, name))
                os.rmdir(self._folder)
            self._folder = None

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
        return ""


class EngineClient:
    """The chat interface :class:`translate.translator.Translator` uses, answered by an :class:`OfflineEngine`.

    ``chat`` calls made in one turn of the event loop go to the engine as one batch; while a batch
    runs, new calls wait and form the next one. One batch is in flight at a time (the engine is busy
    with it), so the engine never sees more than its own batching decides.
    """

    def __init__(self, engine: OfflineEngine, model: str, temperature: float = 0.0):
        self.engine = engine
        self.model = model
        self.temperature = temperature
        self.batches = 0
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._pending: list[tuple[list[dict], int, asyncio.Future]] = []
        self._runner: asyncio.Task | None = None

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def chat(self, messages: list[dict], max_tokens: int) -> Reply | Rejected:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((messages, max_tokens, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let every request created in this turn join the batch
            batch, self._pending = self._pending, []
            conversations = [messages for messages, _, _ in batch]
            params = [{"temperature": self.temperature, "max_tokens": budget} for _, budget, _ in batch]
            self.batches += 1
            self.requests += len(batch)
            try:
                replies = await asyncio.to_thread(self.engine.generate, conversations, params)
            except Exception as err:  # every request of the batch fails with it
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if isinstance(reply, Reply):
                    self.prompt_tokens += reply.prompt_tokens or 0
                    self.completion_tokens += reply.completion_tokens or 0
                if not future.done():
                    future.set_result(reply)
