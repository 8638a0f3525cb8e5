"""The demo's translation model and memory: a tiny random chat model built locally (no download), and
reference translations of the demo's closed vocabulary loaded into the translation cache, so that
translated samples look as a real model's would while the model's own answers (noise) are flagged."""

from __future__ import annotations

import logging

from pipelines.storage import Storage

log = logging.getLogger(__name__)


def prepare_demo_translation(config, storage: Storage, sources: list) -> None:
    """The demo serves a tiny random model, built here, and loads its translation memory into the cache.

    The model's answers are noise (flagged by validation); the memory holds reference translations
    of the demo's closed vocabulary (zh, ja), so translated samples appear as a real model's would.
    """
    from pathlib import Path

    from flows.demo.finetune import finetune_translations
    from flows.demo.generate import reference_translations
    from flows.translation import source_targets
    from translate.cache import CachedAnswer, TranslationCache, text_hash
    from translate.prompt import PROMPT_VERSION
    from translate.tiny_model import build_tiny_model

    model = config.translation.model
    if model is None:
        raise ValueError("translation.model: the demo needs a model path for its tiny local LLM")
    if not (Path(model) / "config.json").exists():
        log.info("building the demo's tiny chat model in %s", model)
        build_tiny_model(model)
    cache_root = config.translation.stage.cache_root or storage.path("translate", "_cache")
    cache = TranslationCache(storage, cache_root, model, PROMPT_VERSION)
    for target in sorted({t for s in sources for t in source_targets(config, s)}):
        memory = {**reference_translations(config.demo.directory, target),
                  **finetune_translations(config.demo.directory, target)}
        hashes = {text_hash(text): text for text in memory}
        known = cache.lookup(target, list(hashes))
        entries = [(h, text, CachedAnswer(memory[text], "stop")) for h, text in hashes.items() if h not in known]
        cache.add(target, entries)
