"""vLLM's offline engine as a child process: run by vLLM's interpreter, not the pipeline's.

:class:`translate.engine.OfflineEngine` starts ``<vllm python> translate/engine_worker.py`` with its
settings in the environment. This file loads ``vllm.LLM`` once, then listens on a Unix socket
(:mod:`multiprocessing.connection`, with an auth key) for the one connection of its parent and
answers batches until the parent says stop or goes away:

    parent -> {"op": "chat", "conversations": [[message, ...], ...], "params": [{"temperature": t,
               "max_tokens": n}, ...]}
    worker -> {"outputs": [[text, finish_reason, prompt_tokens, completion_tokens] | {"rejected": why}, ...]}
              or {"error": "Type: message"} (the batch failed for a reason that is not its inputs)

A batch goes through ``LLM.chat`` in one call, so vLLM batches it continuously. If vLLM refuses the
batch because of an input (a prompt longer than the context), each conversation is tried alone and
the refused ones are answered ``{"rejected": ...}``, as the OpenAI server answers such a request with
a 400. Sampling starts from the model's generation config, as the server's does, then takes the
request's temperature and token budget.

However the worker ends (told to stop, its actor gone, SIGKILL), nothing it started lives on: see
:func:`_guard_group`. Its top level imports only the standard library: the pipeline never imports
vLLM.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from multiprocessing.connection import Listener

GUARD_POLL_S = 0.25


def _guard_group() -> None:
    """Fork a guardian that SIGKILLs this process group once this process is gone, however it went.

    vLLM's engine core, its workers and multiprocessing's resource tracker are children of this
    process in its process group. When a Ray actor exits, Ray SIGKILLs its direct children (this
    process), so no handler here runs and they would live on, holding their memory (and GPUs). The
    guardian is a fork taken before vLLM is imported (a few MiB); it ignores SIGTERM, notices its
    parent is gone (its parent pid changes) and kills the group, itself last.
    """
    if os.getpgid(0) != os.getpid():  # started without a session of its own: make one, so the
        os.setsid()                   # group killed below is never the caller's
    parent, group = os.getpid(), os.getpgid(0)
    if os.fork() != 0:
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == parent:
        time.sleep(GUARD_POLL_S)
    os.killpg(group, signal.SIGKILL)
    os._exit(0)


def _die_with_parent() -> None:
    # Linux: SIGTERM when the parent (a Ray actor, killed with SIGKILL) dies, so no engine outlives it.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    # SIGTERM runs Python's exit path, which shuts vLLM's engine-core processes down with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _sampling(SamplingParams, defaults: dict, params: dict):
    return SamplingParams(**{**defaults, **params})


def _outputs(results) -> list:
    rows = []
    for result in results:
        completion = result.outputs[0]
        prompt_tokens = len(result.prompt_token_ids) if result.prompt_token_ids is not None else None
        rows.append([completion.text, completion.finish_reason, prompt_tokens, len(completion.token_ids)])
    return rows


def _input_errors() -> tuple[type[BaseException], ...]:
    """What vLLM raises for a request it refuses (the server's 4xx): its client errors, or ValueError."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:  # older vLLM: validation errors are ValueErrors
        return (ValueError, TypeError)
    return (ValueError, TypeError, VLLMClientError)


def _answer(llm, SamplingParams, defaults: dict, request: dict) -> dict:
    conversations, params = request["conversations"], request["params"]
    sampling = [_sampling(SamplingParams, defaults, p) for p in params]
    refused = _input_errors()
    try:
        return {"outputs": _outputs(llm.chat(conversations, sampling, use_tqdm=False))}
    except refused as err:
        if len(conversations) == 1:
            return {"outputs": [{"rejected": f"{type(err).__name__}: {err}"}]}
    # One input made vLLM refuse the whole batch: find it, answer the others.
    return {"outputs": [_refusal(llm, c, p, refused) for c, p in zip(conversations, sampling, strict=True)]}


def _refusal(llm, conversation, sampling, refused):
    """One conversation alone: its output, or ``{"rejected": why}`` if vLLM refuses it."""
    try:
        return _outputs(llm.chat([conversation], [sampling], use_tqdm=False))[0]
    except refused as err:
        return {"rejected": f"{type(err).__name__}: {err}"}


def main() -> None:
    _guard_group()
    _die_with_parent()
    spec = json.loads(os.environ["VLMIX_ENGINE_SPEC"])
    from vllm import LLM, SamplingParams

    llm = LLM(model=spec["model"], **spec["engine"])
    try:
        defaults = dict(llm.llm_engine.model_config.get_diff_sampling_param())
    except AttributeError:
        defaults = {}
    defaults = {k: v for k, v in defaults.items() if k != "max_tokens"}
    with Listener(spec["address"], family="AF_UNIX", authkey=bytes.fromhex(spec["authkey"])) as listener:
        with listener.accept() as conn:
            while True:
                try:
                    request = conn.recv()
                except EOFError:  # the parent went away
                    return
                if request.get("op") == "stop":
                    return
                try:
                    reply = _answer(llm, SamplingParams, defaults, request)
                except Exception as err:  # reported to the parent, which decides; the engine stays up
                    reply = {"error": f"{type(err).__name__}: {err}"}
                conn.send(reply)


if __name__ == "__main__":
    main()
