"""The translation stage: English texts of a source -> one output part per input part and target.

For each input part and target language, :class:`Translator` reads the part's texts, asks for each
*distinct* text once (the run's memory, then the persistent cache, then the server), validates each
answer, and writes ``<root>/translate/<source>/<target>/part-<stem>.parquet`` with exactly one row
per input text: the translation, or ``text = null`` and the reason in ``error``. A part whose output
exists is skipped, so a rerun after a crash does only what is missing; its stats are written first
(``part-<stem>.stats.json``) and the Parquet file last, under a temporary name then renamed.

If the servers stay unreachable past the client's retries, the parts in flight fail, nothing of
them is written, and the error is reported; the finished parts stand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pyarrow as pa

from pipelines.errors import is_transient
from pipelines.languages import Language
from pipelines.progress import Progress
from pipelines.storage import Storage
from translate.cache import CachedAnswer, TranslationCache, open_cache, text_hash
from translate.cleanup import clean
from translate.client import ChatClient, Rejected, Reply
from translate.conversation import CONVERSATION_FIELD, ConversationPlan, origin_of
from translate.prompt import PROMPT_VERSION, build_messages
from translate.scoring import Scorer
from translate.settings import TranslateSettings
from translate.stats import PartStats, TargetReport, stats_path, summarise
from translate.table import OUTPUT_SCHEMA, TextRow, output_path, part_name, read_input
from translate.validate import Validator

log = logging.getLogger(__name__)

SOURCE_LANGUAGE = "en"


Answer = CachedAnswer | Rejected


class Translator:
    """Translates input parts with one client, one cache and one memory of the run's answers.

    >>> async with ChatClient(urls, model=model) as client:  # doctest: +SKIP
    ...     reports = await Translator(storage, client, languages, settings).translate_source(
    ...         "coyo", parts, ["zh"])
    """

    def __init__(
        self,
        storage: Storage,
        client: ChatClient,
        languages: dict[str, Language],
        settings: TranslateSettings,
        cache: TranslationCache | None = None,
    ):
        self.storage = storage
        self.client = client
        self.languages = languages
        self.settings = settings
        self.cache = cache if cache is not None else open_cache(storage, settings, client.model)
        self._validators = {
            code: Validator(lang.scripts, settings.validation) for code, lang in languages.items()
        }
        # (target, text hash) -> the answer, as a future while its request is in flight. Failed
        # requests are forgotten so that a later part asks again.
        self._memory: dict[tuple[str, str], asyncio.Future] = {}
        scoring = settings.quality.scoring is not None
        self._scorer = Scorer(storage, settings, client, self.cache is not None) if scoring else None
        self._usage: dict[tuple[str, str], tuple[int, int]] = {}  # (target, text hash) -> prompt, completion tokens

    async def translate_source(
        self,
        source: str,
        parts: list[str],
        targets: list[str],
        text_columns: list[str] | None = None,
    ) -> dict[str, TargetReport]:
        """Translate every input part (paths) of ``source`` into each target; skip finished parts."""
        unknown = [t for t in targets if t not in self.languages]
        if unknown:
            raise KeyError(f"targets {unknown} are not in the language registry {sorted(self.languages)}")
        reports = {t: TargetReport(source, t) for t in targets}
        slots = asyncio.Semaphore(self.settings.parts_in_flight)
        started = time.monotonic()
        progress = Progress("translate", total=len(parts) * len(targets), unit="parts", label=source)

        async def one_part(path: str) -> None:
            part = part_name(path)
            todo = [t for t in targets if not self.storage.exists(output_path(self.storage, source, t, part))]
            for target in set(targets) - set(todo):
                reports[target].parts_skipped += 1
            progress.skip(len(targets) - len(todo))
            if not todo:
                return
            async with slots:
                rows = await asyncio.to_thread(read_input, self.storage, path, text_columns)
                outcomes = await asyncio.gather(
                    *(self._translate_part(source, part, rows, t) for t in todo), return_exceptions=True
                )
            for target, outcome in zip(todo, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    log.error("%s/%s part %s failed: %s", source, target, part, outcome)
                    reports[target].failed[part] = f"{type(outcome).__name__}: {outcome}"
                    if is_transient(outcome):
                        reports[target].transient.add(part)
                    progress.advance(failed=1)
                else:
                    reports[target].parts_written += 1
                    cost = reports[target].cost
                    cost.rows += outcome.rows
                    cost.requests += outcome.requests + outcome.back_requests
                    cost.prompt_tokens += outcome.prompt_tokens
                    cost.completion_tokens += outcome.completion_tokens
                    progress.advance(samples=outcome.rows, drops=sum(outcome.flagged.values()),
                                     requests=outcome.requests)

        await asyncio.gather(*(one_part(path) for path in parts))
        progress.done()
        for target, report in reports.items():
            report.cost.seconds = time.monotonic() - started
            report.stats = await asyncio.to_thread(summarise, self.storage, source, target, report.cost)
        return reports

    async def _translate_part(self, source: str, part: str, rows: list[TextRow], target: str) -> PartStats:
        stats = PartStats(rows=len(rows))
        # A conversation row is planned into pieces, each asked like any other text (translate/conversation.py).
        limits = self.settings.conversations
        # The model's context, where known: what the endpoint reported, or the vLLM vlmix runs.
        context = getattr(self.client, "max_model_len", None) or self.settings.vllm.max_model_len
        plans, wanted = texts_to_ask(rows, self.settings.piece_chars(context))
        stats.texts = len(wanted)
        answers, origins = await self._answers(sorted(set(wanted)), target, stats)
        validator = self._validators[target]
        columns: dict[str, list] = {name: [] for name in OUTPUT_SCHEMA.names}
        flagged: Counter[str] = Counter()
        cleaned: Counter[str] = Counter()  # what was removed from answers before validation, by kind
        for index, row in enumerate(rows):
            plan = plans.get(index)
            if isinstance(plan, ConversationPlan):
                outcome = plan.verdict(answers, validator, limits.short_piece_units)
                translation, error, raw = outcome.text, outcome.error, outcome.raw_output
                cleaned.update(outcome.cleaned)
                origin = origin_of([origins.get(text, "none") for text in plan.texts])
            elif plan is not None:  # a conversation that cannot be translated: why
                translation, error, raw, origin = None, plan, None, "none"
            else:
                text = row.text.strip() if row.text else ""
                answer = answers.get(text)
                raw = answer.output if isinstance(answer, CachedAnswer) else None
                output, removed = clean(text, raw) if raw is not None else (None, [])
                cleaned.update(removed)
                if not text:
                    error = "empty_source"
                elif isinstance(answer, Rejected):
                    error = f"request_rejected_{answer.status}"
                else:
                    error = validator.reason(text, output, answer.finish_reason)
                translation = output if error is None else None
                origin = origins.get(text, "none")
            if error:
                flagged[error] += 1
            for name, value in (
                ("key", row.key),
                ("field", row.field),
                ("target_language", target),
                ("text", translation),
                ("error", error),
                ("source_language", SOURCE_LANGUAGE),
                ("source_text", row.text),
                ("raw_output", raw),
                ("origin", origin),
                ("model", self.client.model),
                ("prompt_version", PROMPT_VERSION),
                ("quality", None),
                ("back_translation", None),
            ):
                columns[name].append(value)
        if self._scorer is not None:  # translate/scoring.py: back-translation chrF or encoder cosine
            await self._scorer.score(columns, rows, plans, answers, target, self.languages[target].name, stats,
                                     flagged)
        stats.flagged = dict(flagged)
        stats.cleaned = dict(cleaned)
        stats.translated = stats.rows - sum(stats.flagged.values())
        table = pa.table(columns, schema=OUTPUT_SCHEMA)
        path = output_path(self.storage, source, target, part)
        await asyncio.to_thread(self.storage.write_json, stats_path(path), stats.to_json())
        await asyncio.to_thread(self.storage.write_parquet, path, table)
        log.info(
            "%s/%s part %s: %d rows, %d translated, flagged %s",
            source,
            target,
            part,
            stats.rows,
            stats.translated,
            stats.flagged or "none",
        )
        return stats

    async def _answers(self, texts: list[str], target: str, stats: PartStats) -> tuple[dict, dict]:
        """Each distinct text's answer and where it came from (run, cache, request)."""
        stats.distinct_texts = len(texts)
        hashes = {text: text_hash(text) for text in texts}
        origins: dict[str, str] = {}
        waiting: dict[str, asyncio.Future] = {}
        for text, digest in hashes.items():
            if (target, digest) in self._memory:
                waiting[text] = self._memory[(target, digest)]
                origins[text] = "run"
        missing = [text for text in texts if text not in waiting]
        if self.cache is not None and missing:
            found = await asyncio.to_thread(self.cache.lookup, target, [hashes[t] for t in missing])
            for text in missing:
                if hashes[text] in found:
                    waiting[text] = _done(found[hashes[text]])
                    self._memory.setdefault((target, hashes[text]), waiting[text])
                    origins[text] = "cache"
        language = self.languages[target].name
        new = []
        for text in texts:
            if text in waiting:
                continue
            # Checked again after the cache lookup: another part may have asked meanwhile.
            if (target, hashes[text]) in self._memory:
                waiting[text] = self._memory[(target, hashes[text])]
                origins[text] = "run"
                continue
            new.append(text)
            future = asyncio.ensure_future(self._ask(text, language, (target, hashes[text])))
            self._memory[(target, hashes[text])] = future
            future.add_done_callback(lambda f, key=(target, hashes[text]): self._forget_failed(key, f))
            waiting[text] = future
            origins[text] = "request"
        stats.from_run = sum(1 for o in origins.values() if o == "run")
        stats.from_cache = sum(1 for o in origins.values() if o == "cache")
        stats.requests = len(new)
        results = await asyncio.gather(*waiting.values(), return_exceptions=True)
        answers = dict(zip(waiting.keys(), results, strict=True))
        if self.cache is not None:  # also when the part fails: what was answered is kept
            entries = [(hashes[t], t, answers[t]) for t in new if isinstance(answers[t], CachedAnswer)]
            await asyncio.to_thread(self.cache.add, target, entries)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        usage = [self._usage.pop((target, hashes[t]), (0, 0)) for t in new]  # the server's count of this part's requests
        stats.prompt_tokens = sum(p for p, _ in usage)
        stats.completion_tokens = sum(c for _, c in usage)
        return answers, origins

    async def _ask(self, text: str, language: str, key: tuple[str, str]) -> Answer:
        reply = await self.client.chat(build_messages(text, language), self.settings.max_tokens(text))
        if isinstance(reply, Reply):
            self._usage[key] = (reply.prompt_tokens or 0, reply.completion_tokens or 0)
            return CachedAnswer(reply.content, reply.finish_reason)
        return reply

    def _forget_failed(self, key: tuple[str, str], future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            if self._memory.get(key) is future:
                del self._memory[key]

def texts_to_ask(rows: list[TextRow], piece_chars: int) -> tuple[dict[int, ConversationPlan | str], list[str]]:
    """What a part asks the model: the conversation rows planned into pieces (row index -> plan, or
    the reason it cannot be translated), and every text to ask, repeats included, in row order."""
    plans = {i: ConversationPlan.parse(row.text, piece_chars)
             for i, row in enumerate(rows) if row.field == CONVERSATION_FIELD}
    wanted = [row.text.strip() for i, row in enumerate(rows) if i not in plans and row.text and row.text.strip()]
    wanted += [text for plan in plans.values() if isinstance(plan, ConversationPlan) for text in plan.texts]
    return plans, wanted


def _done(value) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
