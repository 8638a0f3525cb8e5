"""Datasets as their publishers ship them: a few general readers, a field mapping, named presets.

A source of kind ``published`` names a **preset** (``preset: lsvt``) or spells out a **format**
(``format: {reader: ..., ...}``); ``format:`` entries on a source with a preset override the preset's,
field by field. What happens to one unit of it (:mod:`.kind`):

1. **reader** (:mod:`.readers`) yields ``(record, extras)``, streamed, never read whole:
   ``json`` (an array or an object keyed by id at ``records``; optionally a COCO-like second collection
   joined by ``annotations``/``link``/``record_id``; indices into a list of the same file resolved by
   ``lookups``), ``jsonl``, ``per_file`` (one ``.json`` or CSV-like
   ``.txt`` per image) and ``parquet`` (Hub image structs ``{bytes, path}`` kept); ``extras`` carry
   ``$key``, ``$stem``, ``$parent``, ``$name``, ``$row``, ``$annotations``;
2. the preset's **adapt** ``(record, extras) -> (record, extras) | None`` reshapes what paths cannot
   name (None drops the record, counted ``unreadable_record``);
3. ``where`` selects records (others counted ``not_selected``), ``group_by`` gathers one image's records;
4. the **mapping** (:class:`.mapping.Format`, paths as in :mod:`.paths`: ``data.0.x``, ``sentences.*.raw``,
   ``0:8``, ``ground_truth.$json.gt_parse.text_sequence``; image templates ``"train/{$key}.jpg"``)
   turns a group into an :class:`.mapping.Item`: ``key``, ``image`` (a name below ``image_root``,
   candidates, or embedded bytes), ``size``, ``regions`` (text, points/box, illegible), ``qa``
   (question, answers), ``captions``, ``conversations``, ``text``;
5. the **builder** ``build:`` (:mod:`.builders`) turns an item into drafts (:class:`tasks.draft.Draft`),
   i.e. InternVL conversations: ``scene_text`` (transcription / grounded ``<box>``/``<quad>`` lines on
   0..1000, illegible regions left out), ``document``, ``vqa`` (questions as turns, or ``per_question``;
   the most frequent answer), ``caption``, ``conversation`` (turns kept whole). Drops are counted in the
   unit's ``drops`` Counter by reason; a reason prefixed ``object:`` is a part of a record (a region, a
   question), not a record.

**Presets** (:mod:`.presets`): ``register_preset(Preset(name, format_dict, about=..., adapt=..., files=...))``
in a module of this package named ``pretrain*.py`` or ``finetune*.py`` (imported on first lookup);
``about`` names the publisher's files and where their schema was checked, ``files`` maps each expected
path to what it holds (the README's table). A builder the presets need and the list lacks is added to
``builders.BUILDERS`` (and to ``PURPOSES`` / ``TRANSLATABLE`` as it applies).

>>> from tasks.published import Preset, register_preset, preset
>>> preset("lsvt").format["build"]  # doctest: +SKIP
'scene_text'
"""

from tasks.published.mapping import Format, Item, Region, extract, format_of
from tasks.published.presets import Preset, preset, preset_names, register_preset

__all__ = ["Format", "Item", "Preset", "Region", "extract", "format_of", "preset", "preset_names", "register_preset"]
