"""Scoring a part's accepted translations with the configured method, and the ``min_quality`` filter.

``translation.stage.quality.method`` picks the score (:class:`~translate.settings.QualitySettings`):
``back_translation`` (:mod:`translate.quality`: chrF 0-100 of the answer's English back-translation
against the source) or ``encoder`` (:mod:`translate.encoder`: cosine -1 to 1 of a sentence encoder's
embeddings). Either way a text is scored by itself and a conversation by its pieces as they were asked
and answered, their scores weighted by the pieces' characters; the score goes into the row's
``quality`` column, the part's stats count ``scored``, ``quality_sum`` and ``quality_method``, and a
score below ``min_quality`` flags the row ``low_quality`` (text null).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from translate.cache import open_cache
from translate.encoder import similarities
from translate.prompt import BACK_PROMPT_VERSION
from translate.quality import score as back_translation_scores
from translate.quality import scored_pieces, weighted_score
from translate.settings import TranslateSettings
from translate.stats import PartStats
from translate.table import TextRow


class Scorer:
    """Scores the parts of one :class:`~translate.translator.Translator` (one client, one cache)."""

    def __init__(self, storage, settings: TranslateSettings, client, cache_enabled: bool):
        self.storage = storage
        self.settings = settings
        self.client = client
        self.method = settings.quality.scoring
        self._cache_enabled = cache_enabled
        self._back_cache = None  # the back-translations' cache, opened on first use

    async def score(self, columns: dict[str, list], rows: list[TextRow], plans: dict, answers: dict,
                    target: str, language: str, stats: PartStats, flagged: Counter) -> None:
        """Fill ``quality`` (and ``back_translation``) of each accepted row of ``columns``; flag those
        below ``min_quality``."""
        chosen = [i for i, text in enumerate(columns["text"]) if text is not None]
        pieces = {i: scored_pieces(rows[i].text, plans.get(i), columns["text"][i], answers) for i in chosen}
        pairs = [pair for i in chosen for pair in pieces[i]]
        if not pairs:
            return
        results = await self._pairs(pairs, target, language, stats)
        stats.quality_method = self.method
        floor = self.settings.quality.min_quality
        at = 0
        for i in chosen:
            mine, at = results[at:at + len(pieces[i])], at + len(pieces[i])
            score = weighted_score([source for source, _ in pieces[i]], [s for _, s in mine])
            if self.method == "back_translation":
                english = [e for e, _ in mine]
                columns["back_translation"][i] = english[0] if i not in plans else json.dumps(english, ensure_ascii=False)
            columns["quality"][i] = score
            if score is None:
                continue
            stats.scored += 1
            stats.quality_sum += score
            if floor is not None and score < floor:
                columns["text"][i], columns["error"][i] = None, "low_quality"
                flagged["low_quality"] += 1

    async def _pairs(self, pairs: list[tuple[str, str]], target: str, language: str,
                     stats: PartStats) -> list[tuple[str | None, float | None]]:
        """(back-translation or None, score) per pair, by the configured method."""
        quality = self.settings.quality
        if self.method == "encoder":
            scores = await asyncio.to_thread(similarities, quality.encoder, pairs, quality.encoder_batch_size,
                                             quality.encoder_device)
            return [(None, s) for s in scores]
        if self._back_cache is None and self._cache_enabled:
            self._back_cache = open_cache(self.storage, self.settings, self.client.model, BACK_PROMPT_VERSION)
        results, back = await back_translation_scores(self.client, self._back_cache, pairs, self.settings.max_tokens,
                                                      target, language)
        stats.back_requests = back.requests
        stats.prompt_tokens += back.prompt_tokens
        stats.completion_tokens += back.completion_tokens
        return results
