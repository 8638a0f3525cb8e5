"""The format of a published dataset: which reader, where each part of a record is, which conversations.

A :class:`Format` is plain configuration: a preset is one (plus, rarely, an ``adapt`` function), and a
source's ``format:`` entries override a preset's field by field, so a user's own dataset of a known
shape needs no code. :func:`extract` applies it to a group of records (one image's) and returns an
:class:`Item`: the image, its text regions, questions and answers, captions, conversation or page text,
which a builder (:mod:`tasks.published.builders`) turns into a conversation.

Paths and templates are those of :mod:`tasks.published.paths`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from pipelines._model import ConfigModel
from tasks.published.paths import MISSING, PathError, check_path, fill, is_template, resolve

READERS = ("json", "jsonl", "per_file", "parquet")
# grounding and chat: Table 1b's builders (finetune_builders.py)
BUILDERS = ("scene_text", "document", "vqa", "caption", "conversation", "grounding", "chat")


class Format(ConfigModel):
    """Where the parts of a record are, and what the records become (every field optional but ``reader``
    and ``build``; paths as in :mod:`tasks.published.paths`)."""

    # -- reading --
    reader: Literal[READERS] = Field(description="json: an array or an object keyed by id, streamed; "
                                     "jsonl; per_file: one annotation file per image (.json or CSV-like "
                                     ".txt, whose rows are lists); parquet (Hub image columns {bytes, path})")
    records: str = Field("", description="json: where the records are (ijson prefix: '' the top level, "
                         "'data' for {\"data\": [...]}); an array or an object keyed by id")
    annotations: str | None = Field(None, description="json: a second collection joined to the records "
                                    "(COCO-like files: 'anns'), each naming its record by `link`")
    annotations_file: str | None = Field(None, description="json: the file holding `annotations`, a name beside "
                                         "the records' file (VQA's questions and annotations files); default: "
                                         "the records' own file")
    lookups: dict[str, str] = Field(default_factory=dict, description="json: record paths holding indices into a "
                                    "list elsewhere in the same file, and that list's ijson prefix (VisualDialog's "
                                    "{'dialog.*.question': 'data.questions'}); each index is replaced by the item "
                                    "(None when out of range) as the file is split")
    link: str = Field("image_id", description="annotation field naming its record's id")
    record_id: str = Field("id", description="record field the annotations' `link` refers to ($key: the key)")
    where: dict[str, list[Any]] = Field(default_factory=dict, description="keep only records whose value at "
                                        "each path is one of these (e.g. {split: [train, restval]}); others "
                                        "are counted `not_selected`")
    group_by: str | None = Field(None, description="records with the same value here are one image's "
                                 "(questions of one document); json keeps a group in one unit")
    # -- the record's parts --
    key: str = Field("$key", description="path of the record's id (unique within the source)")
    image: str | list[str] | None = Field(None, description="path of the image (a name, or a Hub struct "
                                          "{bytes, path}), or a template of its name below image_root; a "
                                          "list: candidates tried in order (archives unpacked side by side)")
    width: str | None = Field(None, description="path of the width the coordinates refer to (else the image's)")
    height: str | None = Field(None, description="path of the height the coordinates refer to")
    regions: str | None = Field(None, description="path of the list of text regions ('' the record itself)")
    region_text: str = Field("transcription", description="path in a region of its text")
    region_points: str | None = Field("points", description="path in a region of its polygon: [[x, y], ...] "
                                      "or [x1, y1, x2, y2, ...], pixels")
    region_box: str | None = Field(None, description="path in a region of [x, y, w, h], used where it has no polygon")
    region_illegible: str | None = Field(None, description="path in a region of an illegibility flag (true/1)")
    illegible_texts: list[str] = Field(default_factory=lambda: ["###"], description="texts that mark a "
                                       "region illegible")
    question: str | None = Field(None, description="path of a question (each record, or each of `qa`)")
    answers: str | None = Field(None, description="path of its answer or list of answers")
    qa: str | None = Field(None, description="path of a list of question records inside one record")
    caption: str | None = Field(None, description="path of a caption or list of captions")
    conversations: str | None = Field(None, description="path of LLaVA/InternVL turns ({from, value})")
    text: str | None = Field(None, description="path of a page's whole text (document transcription)")
    # -- the conversations --
    build: Literal[BUILDERS] = Field(description="scene_text: OCR transcription / grounded lines; document: "
                                     "transcription of `text`; vqa: questions as turns; caption; conversation")
    per_question: bool = Field(False, description="vqa: one conversation per question, not one per image")
    question_suffix: str = Field("", description="vqa: appended to each question (e.g. ' Answer the question "
                                 "using a single word or phrase.')")
    grounded_fraction: float = Field(0.5, ge=0, le=1, description="scene_text: share given grounded lines")
    box_format: Literal["box", "quad"] = Field("box", description="scene_text: grounded lines as <box> or <quad>")

    @model_validator(mode="after")
    def _paths_are_valid(self) -> Format:
        paths = [self.records, self.key, self.width, self.height, self.regions, self.region_text,
                 self.region_points, self.region_box, self.region_illegible, self.question, self.answers, self.qa,
                 self.caption, self.conversations, self.text, self.group_by, *self.where, *self.lookups]
        for path in (p for p in paths if p):
            problem = check_path(path)
            if problem:
                raise ValueError(problem)
        needs = {"scene_text": "regions", "document": "text", "vqa": "question", "caption": "caption",
                 "conversation": "conversations", "grounding": "regions", "chat": "conversations"}[self.build]
        if getattr(self, needs) is None:
            raise ValueError(f"build {self.build!r} needs `{needs}`")
        if self.build == "vqa" and self.answers is None:
            raise ValueError("build 'vqa' needs `answers`")
        if self.annotations_file is not None and self.annotations is None:
            raise ValueError("`annotations_file` names the file of `annotations`: set `annotations` too")
        if self.lookups and self.reader != "json":
            raise ValueError("`lookups` (indices into a list of the same file) are read by the json reader only")
        if self.annotations is not None and self.reader != "json":
            raise ValueError("`annotations` (a joined collection) is read by the json reader only")
        return self


def format_of(preset_format: dict | None, overrides: dict | None) -> Format:
    """The preset's format with a source's ``format:`` entries over it (ValueError naming each field)."""
    merged = {**(preset_format or {}), **(overrides or {})}
    try:
        return Format(**merged)
    except ValidationError as err:
        problems = "; ".join((f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
                             + e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise ValueError(problems) from None


@dataclass
class Region:
    text: str
    points: Any  # as found; builders check and normalise it
    box: Any = None
    illegible: bool = False


@dataclass
class Item:
    """One image's annotations, read through a :class:`Format` (what a builder turns into conversations)."""

    key: str
    image: Any = None  # a name below image_root, a list of candidates, or embedded {bytes, path}; None: none
    size: tuple[float, float] | None = None  # the size coordinates refer to, if the record says
    regions: list[Region] = field(default_factory=list)
    qa: list[tuple[str, list[str]]] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    conversations: Any = None
    text: str | None = None


def _as_list(value: Any) -> list:
    return [] if value is None or value is MISSING else value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    if value is None or value is MISSING:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value.strip() if isinstance(value, str) else " ".join(str(value).split())


def image_of(fmt: Format, record: Any, extras: dict) -> Any:
    """The image a record names (see :attr:`Format.image`)."""
    specs = fmt.image if isinstance(fmt.image, list) else [fmt.image] if fmt.image else []
    found = [fill(s, record, extras) if is_template(s) else resolve(record, s, extras) for s in specs]
    return found[0] if len(found) == 1 else found or None


def extract(fmt: Format, records: list[tuple[Any, dict]]) -> Item:
    """The :class:`Item` of one group of ``(record, extras)`` (one record unless ``group_by``); raises
    PathError when a record lacks what the format says it has."""
    first, first_extras = records[0]
    key = _text(resolve(first, fmt.key, first_extras))
    if not key:
        raise PathError(f"empty key at {fmt.key!r}")
    item = Item(key, image_of(fmt, first, first_extras))
    if fmt.width and fmt.height:
        width, height = resolve(first, fmt.width, first_extras, None), resolve(first, fmt.height, first_extras, None)
        if isinstance(width, int | float) and isinstance(height, int | float) and width > 0 and height > 0:
            item.size = (float(width), float(height))
    for record, extras in records:
        if fmt.regions is not None:
            for region in _as_list(resolve(record, fmt.regions, extras)):
                item.regions.append(_region(fmt, region))
        if fmt.question is not None:
            entries = _as_list(resolve(record, fmt.qa, extras)) if fmt.qa else [record]
            for entry in entries:
                question = _text(resolve(entry, fmt.question, extras, None))
                answers = [_text(a) for a in _as_list(resolve(entry, fmt.answers, extras, None))]
                item.qa.append((question, [a for a in answers if a]))
        if fmt.caption is not None:
            item.captions.extend(c for c in (_text(v) for v in _as_list(resolve(record, fmt.caption, extras, None))) if c)
    if fmt.conversations is not None:
        item.conversations = resolve(first, fmt.conversations, first_extras)
    if fmt.text is not None:
        item.text = _text(resolve(first, fmt.text, first_extras, None))
    return item


def _region(fmt: Format, region: Any) -> Region:
    text = _text(resolve(region, fmt.region_text, None, None))
    flag = resolve(region, fmt.region_illegible, None, False) if fmt.region_illegible else False
    illegible = _truthy(flag) or text in fmt.illegible_texts or not text
    points = resolve(region, fmt.region_points, None, None) if fmt.region_points else None
    box = resolve(region, fmt.region_box, None, None) if fmt.region_box else None
    return Region(text, points, box, illegible)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "illegible")
    return bool(value)
