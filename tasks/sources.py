"""The built-in source kinds (:mod:`tasks.kinds` explains the contract)."""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterator

from braceexpand import braceexpand

from pipelines.layout.raw import RAW_DIR, complete_shards
from pipelines.storage import Storage
from tasks import coco, units
from tasks.captioning import caption_drafts
from tasks.conversations import internvl_drafts, webdataset_drafts
from tasks.detection import detection_drafts
from tasks.kinds import OCR_TASKS, Kind, TaskContext, Unit, register
from tasks.local import coco_drafts, grit_drafts

_WILDCARDS = set("*?[")


def expand_locations(storage: Storage, source) -> list[str]:
    """Every file a source's ``locations`` name: braces expanded (``{000000..000999}``), globs listed;
    a name without wildcards must exist. Raises FileNotFoundError naming the source and its ``obtain``."""
    found: list[str] = []
    missing: list[str] = []
    for location in source.locations:
        for name in braceexpand(location):
            path = storage.fs._strip_protocol(name)
            if _WILDCARDS & set(path):
                matches = storage.glob(path)
                (found.extend(matches) if matches else missing.append(name))
            elif storage.exists(path):
                found.append(path)
            else:
                missing.append(name)
    if missing:
        hint = f"; {source.obtain}" if getattr(source, "obtain", None) else ""
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise FileNotFoundError(f"source {source.name!r}: locations not found: {shown}{hint}")
    # As URIs (s3://bucket/...), so a reference to a file outside the storage root reads it back there.
    return list(dict.fromkeys(storage.uri(path) for path in found))


@register
class UrlList(Kind):
    name = "url_list"
    # conversation: a list of images with long descriptions (Laion-GPT4V), each answering a request for detail
    tasks = ("captioning", "conversation", "detection", *OCR_TASKS)
    translatable = True
    downloads = True

    def problems(self, source, task_names):
        found = [p for p in super().problems(source, task_names) if p[0] not in ("ocr", "locations")]
        if source.images_from is None and not source.locations:
            found.append(("locations", "a url_list source needs `locations` (its URL lists), or `images_from`"))
        if source.ocr is not None and source.task not in OCR_TASKS:
            found.append(("ocr", f"OCR builds OCR corpora: set task to one of {list(OCR_TASKS)}, or remove `ocr`"))
        for filter_name, column in source.filters.required_columns().items():
            if getattr(source.columns, column) is None:
                found.append(("filters", f"filter `{filter_name}` needs `columns.{column}` to be set"))
        return found

    def translatable_for(self, source) -> bool:
        return source.task not in OCR_TASKS

    def why_not_translatable(self, source) -> str:
        return "OCR samples answer with the text in the image, which a translation would falsify: remove translate_to"

    def built_by_task_stage(self, source) -> bool:
        return source.task not in OCR_TASKS

    def purposes(self, source):
        return {"captioning": ["caption"], "conversation": ["describe"]}.get(source.task, ["detect", "refer"])

    def units(self, source, ctx: TaskContext) -> Iterator[Unit]:
        raw = source.images_from or source.name
        shards = complete_shards(ctx.storage, raw)
        if not shards:
            raise FileNotFoundError(f"source {source.name!r}: no complete raw shards under "
                                    f"{ctx.storage.path(RAW_DIR, raw)}; run the download stage first")
        yield from (Unit(shard, (raw,)) for shard in shards)

    def items(self, source, unit, ctx, images, drops: Counter):
        (raw,) = unit.spec
        if source.task in ("captioning", "conversation"):
            return caption_drafts(ctx.storage, raw, unit.name, images, drops, detailed=source.task == "conversation")
        return detection_drafts(ctx.storage, raw, unit.name, ctx.settings.max_objects, images, drops)


@register
class Coco(Kind):
    name = "coco"
    tasks = ("detection",)
    translatable = True
    needs_image_root = True

    def purposes(self, source):
        return ["detect"]

    def units(self, source, ctx):
        for location in expand_locations(ctx.storage, source):
            index = coco.partition(ctx.storage, source.name, location, ctx.settings.images_per_unit)
            yield from (Unit(name, (location,)) for name in index["units"])

    def items(self, source, unit, ctx, images, drops):
        records = coco.unit_records(ctx.storage, source.name, unit.spec[0], unit.name)
        return coco_drafts(ctx.storage, source.image_root, records, ctx.settings.max_objects, images, drops,
                           source.image_path_strip)


class _JsonLines(Kind):
    """JSON Lines files cut into units of ``images_per_unit`` records; with several files, each
    record's key is prefixed with its file's stem, so keys stay unique across the source."""

    def units(self, source, ctx):
        files = expand_locations(ctx.storage, source)
        for location in files:
            prefix = f"{units.file_stem(location)}-" if len(files) > 1 else ""
            ranges = units.line_ranges(ctx.storage, source.name, location, ctx.settings.images_per_unit)
            for index, (start, end) in enumerate(ranges):
                yield Unit(units.unit_name(location, index), (location, start, end, prefix))

    def records(self, unit, ctx, drops):
        location, start, end, prefix = unit.spec
        for offset, record in units.read_records(ctx.storage, location, start, end, drops):
            if prefix:
                record = {**record, "id": f"{prefix}{record.get('id', f'o{offset}')}"}
            yield offset, record


@register
class GritJsonl(_JsonLines):
    name = "grit_jsonl"
    tasks = ("detection",)
    translatable = True
    needs_image_root = True

    def purposes(self, source):
        return ["refer"]

    def items(self, source, unit, ctx, images, drops):
        records = self.records(unit, ctx, drops)
        return grit_drafts(ctx.storage, source.image_root, records, ctx.settings.max_objects, images, drops,
                           source.image_path_strip)


@register
class InternvlJsonl(_JsonLines):
    name = "internvl_jsonl"
    translatable = True

    def items(self, source, unit, ctx, images, drops):
        records = self.records(unit, ctx, drops)
        return internvl_drafts(ctx.storage, source.image_root, records, source.language, images, drops, ctx.detect,
                               source.image_path_strip)


@register
class WebDataset(Kind):
    name = "webdataset"
    translatable = True

    def problems(self, source, task_names):
        found = super().problems(source, task_names)
        if source.image_root is not None:
            found.append(("image_root", "a webdataset source carries its images inside its tars: remove image_root"))
        return found

    def units(self, source, ctx):
        seen: Counter[str] = Counter()
        for path in expand_locations(ctx.storage, source):
            stem = posixpath.basename(path).split(".")[0]
            seen[stem] += 1
            yield Unit(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}", (path,))

    def items(self, source, unit, ctx, images, drops):
        return webdataset_drafts(ctx.storage, unit.spec[0], source.language, images, drops, ctx.detect)
