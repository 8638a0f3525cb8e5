"""OCR samples whose answer is the caption itself: URL lists of rendered text (SynthDoG-style), whose
caption is the exact text of the image, need no OCR model.

One unit per complete raw shard, on the one stage contract: each writes the shard's task table
(``<root>/tasks/<dataset>/<shard>.parquet``) with one transcription conversation per sample, the
prompt drawn from the sample's language's pool with a generator seeded by (seed, dataset, key), so
a rebuild is identical. A sample with an empty caption is dropped (``empty_caption``).

>>> execute(CaptionTranscriptions("synthdog", "synthdog", "ocr_small", "auto"), ctx)  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from pipelines.languages import language_of
from pipelines.layout.conversations import ConversationRecord, write_conversation_table
from pipelines.layout.raw import complete_shards, iter_raw_shard
from pipelines.stage import Counters, Stage, StageContext, Unit


@dataclass(frozen=True)
class TranscriptionContext(StageContext):
    seed: int = 0
    prompts: dict[str, list[str]] = field(default_factory=dict)  # language -> transcription instructions
    scripts: dict[str, list[str]] = field(default_factory=dict)  # language -> its scripts, for `auto`
    perceptual_hash: bool = False  # each image's pHash as it is read (a run that decontaminates)


class CaptionTranscriptions(Stage):
    name = "ocr"
    unit_kind = "shards"

    def __init__(self, dataset: str, raw_source: str, task: str, language: str):
        self.dataset, self.raw_source, self.task, self.language = dataset, raw_source, task, language
        self.label = dataset

    def units(self, ctx: TranscriptionContext):
        for shard in complete_shards(ctx.storage(), self.raw_source):
            yield Unit(shard, group=self.dataset)

    def done(self, unit: Unit, ctx: TranscriptionContext) -> bool:
        storage = ctx.storage()
        return storage.exists(storage.path("tasks", self.dataset, f"{unit.name}.parquet"))

    def run_unit(self, unit: Unit, ctx: TranscriptionContext) -> Counters:
        storage = ctx.storage()
        records: dict[str, ConversationRecord] = {}
        drops: Counter = Counter()
        for sample in iter_raw_shard(storage, self.raw_source, unit.name):
            text = sample.caption.strip()
            if not text:
                drops["empty_caption"] += 1
                continue
            language = self.language if self.language != "auto" else language_of(text, ctx.scripts)
            prompts = ctx.prompts.get(language)
            if not prompts:
                raise ValueError(f"source {self.dataset!r}: no transcription prompts for language {language!r}; "
                                 f"add it to `languages` (configured: {sorted(ctx.prompts)})")
            prompt = random.Random(f"{ctx.seed}:{self.dataset}:{sample.key}").choice(prompts)
            records[sample.key] = ConversationRecord(sample.key, language, [
                {"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": text}])
        write_conversation_table(storage, self.dataset, self.task, self.raw_source, unit.name, records, drops,
                                 hash_images=ctx.perceptual_hash)
        return Counters(samples=len(records), drops=drops)
