"""What a translation run will ask, before it asks: distinct texts per target and their tokens.

``vlmix translate --plan`` runs two stages on the one contract (:mod:`pipelines.stage`), so no
text passes through the driver:

1. :class:`PlanParts`, one unit per input part: the part's texts as the stage would ask them
   (:func:`translate.translator.texts_to_ask`: conversations cut into pieces, blanks left out),
   each distinct one written with its token counts to one of ``buckets`` scratch folders chosen by
   its hash, once per target of its source;
2. :class:`PlanBuckets`, one unit per bucket: the distinct texts of every target across all parts,
   and those of them the translation cache does not hold yet, with their tokens.

The driver adds up a few numbers per unit. Tokens are counted with the model's tokenizer where
one is given as a local folder (each request's messages in its chat template), else estimated at
:data:`CHARS_PER_TOKEN` characters a token and :data:`TEMPLATE_TOKENS_PER_MESSAGE` per message.
An answer's length is unknown until the model gives it: ``answer_tokens`` assumes as many tokens
as the source text (:data:`ANSWER_TOKENS_PER_SOURCE_TOKEN`), ``answer_budget`` is the most the
token budget (``max_tokens``) allows.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.languages import Language
from pipelines.stage import Counters, Stage, StageContext, Unit
from translate.cache import TranslationCache, open_cache, text_hash
from translate.prompt import build_messages
from translate.settings import TranslateSettings
from translate.table import TRANSLATE_DIR, part_name, read_input
from translate.translator import texts_to_ask

CHARS_PER_TOKEN = 4.0  # English prose in common BPE tokenizers (the estimate without a tokenizer)
TEMPLATE_TOKENS_PER_MESSAGE = 8  # role markers and separators of a chat template, per message
ANSWER_TOKENS_PER_SOURCE_TOKEN = 1.0  # the expected answer: as long, in tokens, as the English text

_BUCKET_SCHEMA = pa.schema([("hash", pa.string()), ("target", pa.string()), ("text_tokens", pa.int64()),
                            ("budget", pa.int64()), ("prompt_tokens", pa.int64())])
PLAN_FIELDS = ("texts", "distinct", "uncached", "prompt_tokens", "answer_tokens", "answer_budget")


@dataclass(frozen=True)
class PlanContext(StageContext):
    """What both plan stages need; pickles small."""

    settings: TranslateSettings | None = None
    languages: dict[str, Language] | None = None
    scratch: str = ""  # storage path of this plan's buckets (removed afterwards)
    buckets: int = 1
    piece_chars: int = 1500  # the stage's cut of conversations (TranslateSettings.piece_chars)
    tokenizer: str | None = None  # a local folder holding the model's tokenizer; None: estimates
    model: str | None = None  # the cache's model name; None: the cache is not consulted
    text_columns: tuple[str, ...] | None = None


class TokenCounter:
    """Tokens of a text and of the prompt around it: the tokenizer's count, or the estimate."""

    def __init__(self, tokenizer: str | None):
        self.path = tokenizer

    @cached_property
    def _tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path)

    def text(self, text: str) -> int:
        if self.path is None:
            return max(1, round(len(text) / CHARS_PER_TOKEN))
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, text: str, language: str) -> int:
        """The request's prompt: the Figure-5 messages around ``text`` in the model's chat template."""
        messages = build_messages(text, language)
        if self.path is None:
            chars = sum(len(m["content"]) for m in messages)
            return round(chars / CHARS_PER_TOKEN) + TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            return len(ids["input_ids"] if isinstance(ids, dict) else ids)
        return sum(self.text(m["content"]) for m in messages) + TEMPLATE_TOKENS_PER_MESSAGE * len(messages)


def tokenizer_folder(path: str | None) -> str | None:
    """``path`` if it is a local folder holding a tokenizer (a model directory), else None."""
    if path and Path(path).is_dir() and any((Path(path) / name).exists()
                                              for name in ("tokenizer.json", "tokenizer_config.json")):
        return str(path)
    return None


class PlanParts(Stage):
    """Each input part: its distinct texts, with their tokens, into the buckets of their hashes."""

    name = "translate-plan"
    unit_kind = "parts"
    num_cpus = 1

    def __init__(self, plan: dict[str, tuple[list[str], list[str]]]):
        self.plan = plan  # source -> (input parts, targets), as the stage's

    def units(self, ctx):
        for source, (parts, targets) in self.plan.items():
            for index, path in enumerate(parts):
                yield Unit(f"{index:05d}-{part_name(path)}", (path, tuple(targets)), group=source)

    def done(self, unit, ctx):
        return False  # a plan is made fresh each time, into a fresh scratch folder

    def run_unit(self, unit: Unit, ctx: PlanContext) -> Counters:
        path, targets = unit.spec
        storage = ctx.storage()
        rows = read_input(storage, path, list(ctx.text_columns) if ctx.text_columns else None)
        _, wanted = texts_to_ask(rows, ctx.piece_chars)
        counter = TokenCounter(ctx.tokenizer)
        distinct = sorted(set(wanted))
        rows_out: dict[str, list] = {name: [] for name in _BUCKET_SCHEMA.names}
        for text in distinct:
            digest, tokens, budget = text_hash(text), counter.text(text), ctx.settings.max_tokens(text)
            for target in targets:
                for name, value in zip(_BUCKET_SCHEMA.names, (digest, target, tokens, budget,
                                       counter.prompt(text, ctx.languages[target].name)), strict=True):
                    rows_out[name].append(value)
        table = pa.table(rows_out, schema=_BUCKET_SCHEMA)
        numbers = pa.array([int(h[:8], 16) % ctx.buckets for h in table["hash"].to_pylist()], pa.int64())
        for b in sorted(set(numbers.to_pylist())):
            storage.write_parquet(posixpath.join(ctx.scratch, f"b{b:04d}", f"{unit.group}-{unit.name}.parquet"),
                                  table.filter(pc.equal(numbers, b)))
        return Counters(samples=len(rows), tallies={"texts": Counter({t: len(wanted) for t in targets})})


class PlanBuckets(Stage):
    """Each bucket: per target, its distinct texts across every part, and those the cache lacks."""

    name = "translate-plan"
    unit_kind = "buckets"
    num_cpus = 1

    def units(self, ctx: PlanContext):
        for b in range(ctx.buckets):
            yield Unit(f"b{b:04d}")

    def done(self, unit, ctx):
        return False

    def run_unit(self, unit: Unit, ctx: PlanContext) -> Counters:
        storage = ctx.storage()
        files = storage.glob(posixpath.join(ctx.scratch, unit.name, "*.parquet"))
        tallies = {name: Counter() for name in PLAN_FIELDS if name != "texts"}
        if not files:
            return Counters(tallies=tallies)
        table = pa.concat_tables([storage.read_parquet(f) for f in files])
        # One row per (target, text): the same text in many parts and sources counts once.
        table = table.group_by(["target", "hash"]).aggregate(
            [("text_tokens", "max"), ("budget", "max"), ("prompt_tokens", "max")])
        cache = _cache(storage, ctx)
        for target in pc.unique(table["target"]).to_pylist():
            rows = table.filter(pc.equal(table["target"], target))
            hashes = rows["hash"].to_pylist()
            cached = set(cache.lookup(target, hashes)) if cache is not None else set()
            todo = rows.filter(pa.array([h not in cached for h in hashes]))
            tallies["distinct"][target] += rows.num_rows
            tallies["uncached"][target] += todo.num_rows
            tallies["prompt_tokens"][target] += pc.sum(todo["prompt_tokens_max"]).as_py() or 0
            text_tokens = pc.sum(todo["text_tokens_max"]).as_py() or 0
            tallies["answer_tokens"][target] += round(text_tokens * ANSWER_TOKENS_PER_SOURCE_TOKEN)
            tallies["answer_budget"][target] += pc.sum(todo["budget_max"]).as_py() or 0
        return Counters(tallies=tallies)


def _cache(storage, ctx: PlanContext) -> TranslationCache | None:
    return open_cache(storage, ctx.settings, ctx.model) if ctx.model else None


def scratch_folder(storage, seed: str) -> str:
    """A fresh folder for one plan's buckets, under ``<root>/translate/_plan/``."""
    import uuid

    name = hashlib.sha256(f"{seed}{uuid.uuid4()}".encode()).hexdigest()[:12]
    return storage.path(TRANSLATE_DIR, "_plan", name)


@dataclass
class TargetPlan:
    """One target language's share of a run: its texts and what asking for them costs."""

    target: str
    texts: int = 0  # texts to ask, repeats included (a conversation counts its pieces)
    distinct: int = 0  # distinct texts across every part and source
    uncached: int = 0  # of those, the ones the cache does not answer: the requests
    prompt_tokens: int = 0  # of the uncached texts' requests
    answer_tokens: int = 0  # expected (ANSWER_TOKENS_PER_SOURCE_TOKEN)
    answer_budget: int = 0  # at most (the token budget, max_tokens)

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in ("target", *PLAN_FIELDS)}


def make_plan(plan: dict[str, tuple[list[str], list[str]]], ctx: PlanContext) -> dict[str, TargetPlan]:
    """Run both plan stages over ``plan`` (source -> (input parts, targets)); target -> its plan."""
    from pipelines.stage import execute

    totals = {target: TargetPlan(target) for _, targets in plan.values() for target in targets}
    try:
        reports = [execute(PlanParts(plan), ctx), execute(PlanBuckets(), ctx)]
    finally:
        ctx.storage().remove(ctx.scratch)
    for report in reports:
        for name, counts in report.counters.tallies.items():
            for target, n in counts.items():
                setattr(totals[target], name, getattr(totals[target], name) + n)
    return totals
