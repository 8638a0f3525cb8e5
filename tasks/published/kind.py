"""The ``published`` source kind: a dataset read from its publisher's files through a preset or a format.

.. code-block:: yaml

    - {name: lsvt, kind: published, preset: lsvt, task: ocr_small, language: zh,
       locations: ["${paths.data}/lsvt/train_full_labels.json"], image_root: "${paths.data}/lsvt"}

A unit's records are read (:mod:`.readers`), adapted (the preset's ``adapt``), selected (``where``),
grouped (``group_by``), mapped to items (:mod:`.mapping`) and built into drafts (:mod:`.builders`);
a record the format cannot read is counted (``unreadable_record``), never fatal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from tasks.kinds import Kind, Unit, register
from tasks.published.builders import BUILDERS, PURPOSES, TRANSLATABLE
from tasks.published.images import EmbeddedImages, item_pictures
from tasks.published.mapping import Format, extract, format_of
from tasks.published.paths import PathError, resolve
from tasks.published.presets import preset
from tasks.published.readers import reader_units, unit_records


def source_format(source) -> tuple[Format, Any]:
    """The source's :class:`Format` (its preset's, with its ``format:`` entries over it) and ``adapt``."""
    name = getattr(source, "preset", None)
    chosen = preset(name) if name else None
    overrides = dict(getattr(source, "format", None) or {})
    try:
        fmt = format_of(chosen.format if chosen else None, overrides)
    except ValueError as err:
        raise ValueError(f"source {source.name!r}: format: {err}") from None
    return fmt, (chosen.adapt if chosen else None)


@register
class Published(Kind):
    name = "published"

    def problems(self, source, task_names):
        found = super().problems(source, task_names)
        if not getattr(source, "preset", None) and not getattr(source, "format", None):
            return [*found, ("preset", "a published source needs a `preset` (or a whole `format`)")]
        try:
            fmt, _ = source_format(source)
        except KeyError as err:
            return [*found, ("preset", str(err.args[0]))]
        except ValueError as err:
            return [*found, ("format", str(err).split("format: ", 1)[-1])]
        if source.image_root is None and fmt.image is not None and fmt.reader != "parquet":
            found.append(("image_root", "a published source needs `image_root`, the folder its image paths "
                                        "are relative to"))
        return found

    def translatable_for(self, source) -> bool:
        try:
            return source_format(source)[0].build in TRANSLATABLE
        except (KeyError, ValueError):
            return True  # the preset or format problem is reported on its own

    def why_not_translatable(self, source) -> str:
        return (f"{source_format(source)[0].build} samples answer with the text in the image, which a "
                "translation would falsify: remove translate_to")

    def purposes(self, source):
        return PURPOSES.get(source_format(source)[0].build, [])

    def units(self, source, ctx):
        from tasks.sources import expand_locations

        fmt, _ = source_format(source)
        locations = expand_locations(ctx.storage, source)
        seen: dict[str, int] = {}
        for unit in reader_units(ctx.storage, source.name, fmt, locations, ctx.settings.images_per_unit):
            seen[unit.name] = seen.get(unit.name, 0) + 1  # files of one name in several folders
            yield unit if seen[unit.name] == 1 else Unit(f"{unit.name}-{seen[unit.name]}", unit.spec)

    def items(self, source, unit, ctx, images, drops: Counter):
        fmt, adapt = source_format(source)
        embedded = EmbeddedImages(ctx.storage, source.name, unit.name)
        build = BUILDERS[fmt.build]
        seen: set[str] = set()
        for group in _groups(fmt, adapt, unit_records(ctx.storage, source.name, fmt, unit, drops), drops):
            try:
                item = extract(fmt, group)
            except PathError:
                drops["unreadable_record"] += 1
                continue
            if item.key in seen:
                drops["duplicate_key"] += 1
                continue
            seen.add(item.key)
            pictures = item_pictures(ctx.storage, source.image_root, source.image_path_strip, item.image, images,
                                     embedded, drops)
            if pictures is None:
                continue
            if fmt.build in ("scene_text", "document") and not pictures:
                drops["no_image"] += 1
                continue
            yield from build(fmt, item, pictures, source.language, ctx.detect, ctx.settings.seed, drops)
        embedded.commit()


def _groups(fmt: Format, adapt, records, drops: Counter) -> Iterator[list[tuple[Any, dict]]]:
    """Records that pass ``where``, adapted, one list per image (``group_by``: in first-seen order)."""
    grouped: dict[str, list] = {}
    for record, extras in records:
        if adapt is not None:
            adapted = adapt(record, extras)
            if adapted is None:
                drops["unreadable_record"] += 1
                continue
            record, extras = adapted
        if fmt.where and not all(resolve(record, path, extras, None) in allowed for path, allowed in fmt.where.items()):
            drops["not_selected"] += 1
            continue
        if fmt.group_by is None:
            yield [(record, extras)]
        else:
            group = resolve(record, fmt.group_by, extras, None)
            grouped.setdefault(repr(group), []).append((record, extras))
    yield from grouped.values()
