"""A quality score per translated text from a multilingual sentence encoder (LaBSE-class).

With ``translation.stage.quality.method: encoder`` and ``encoder: <folder>``, the English source and
its translation are embedded by a `sentence-transformers <https://sbert.net>`_ model read from a local
folder (no download: ``local_files_only``), and the score is the cosine similarity of the two
(normalised) embeddings, -1 to 1. Unlike back-translation it asks the translation model nothing more.

Where it runs: in the process that translates, a Ray worker or the engine actor (or the driver when Ray
is not up). The model is loaded once per process (:func:`load`, kept for the process's life; Ray reuses
its worker processes, so a worker loads it for its first part only) and each part's distinct texts are
encoded in one call, ``encoder_batch_size`` at a time. ``encoder_device: auto`` takes a GPU where the
process sees one: Ray gives a request-sending task none, the engine actor shares its GPU with vLLM (leave
room with ``vllm.gpu_memory_utilization``, or set ``cpu``).

What a similarity says depends on the encoder: measure it on a reference set with your weights
(``bench/translate/quality.py``) before choosing ``min_quality``. vlmix's tests use a tiny random
encoder, which tests the plumbing, never the quality.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from pipelines._imports import require

MODULES_FILE = "modules.json"

_loaded: dict[tuple[str, str], tuple[object, threading.Lock]] = {}
_loading = threading.Lock()
loads = 0  # models loaded by this process (a test reads it: once per process, not per part)


def check_folder(path: str) -> str:
    """``path`` if it is a local folder holding a sentence-transformers model, else ValueError saying what
    is wrong. Reads ``modules.json`` only (no torch): what ``vlmix validate`` checks."""
    if "://" in path:
        raise ValueError(f"a local folder is needed (the encoder is loaded from disk), not {path!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError("no such folder (a local folder of a sentence-transformers model, e.g. LaBSE "
                         "saved with SentenceTransformer.save)")
    modules_file = folder / MODULES_FILE
    if not modules_file.is_file():
        raise ValueError(f"not a sentence-transformers model: no {MODULES_FILE} in the folder (a plain "
                         "transformers model needs a pooling layer: save it with SentenceTransformer.save)")
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not a sentence-transformers model: {MODULES_FILE} is not readable JSON ({err})") from None
    if not isinstance(modules, list) or not modules or not all(
        isinstance(m, dict) and isinstance(m.get("type"), str) and isinstance(m.get("path", ""), str) for m in modules
    ):
        raise ValueError(f"not a sentence-transformers model: {MODULES_FILE} is not a list of modules "
                         "({\"type\": ..., \"path\": ...})")
    missing = [m["path"] for m in modules if m.get("path") and not (folder / m["path"]).is_dir()]
    if missing:
        raise ValueError(f"not a sentence-transformers model: the folders {missing} that {MODULES_FILE} "
                         "names are missing")
    return path


def device_of(setting: str) -> str:
    if setting != "auto":
        return setting
    torch = require("torch", "quality")
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(path: str, device: str):
    """The encoder at ``path`` on ``device`` and the lock its callers share: loaded on first use, then
    kept for this process's life."""
    global loads
    with _loading:
        key = (str(Path(path).resolve()), device)
        if key not in _loaded:
            check_folder(path)
            st = require("sentence_transformers", "quality")
            _loaded[key] = (st.SentenceTransformer(path, device=device, local_files_only=True), threading.Lock())
            loads += 1
        return _loaded[key]


def similarities(path: str, pairs: list[tuple[str, str]], batch_size: int = 64, device: str = "auto") -> list[float]:
    """Cosine similarity (-1 to 1, 4 decimals) of each ``(source, translation)`` pair's embeddings; each
    distinct text is encoded once, all in one call. Blocking: call it from a thread."""
    if not pairs:
        return []
    model, lock = load(path, device_of(device))
    texts = sorted({text for pair in pairs for text in pair})
    with lock:  # parts in flight in one process share the model; one encodes at a time
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False)
    at = {text: i for i, text in enumerate(texts)}
    return [round(max(-1.0, min(1.0, float(vectors[at[s]] @ vectors[at[t]]))), 4) for s, t in pairs]
