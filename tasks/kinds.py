"""Source kinds: one class per published data layout, and the registry every stage and ``validate`` ask.

A kind declares what it can do (which tasks it can feed, whether its texts can be translated,
whether its images are downloaded, whether it needs an ``image_root``), checks a configured source
against that (:meth:`Kind.problems`: ``(field, message)`` pairs that ``vlmix validate`` reports
before any work), splits a source into units (resume points, :meth:`Kind.units`) and turns a unit
into drafts or finished samples (:meth:`Kind.items`). The task stage runs every source through its
kind; nothing else branches on kind names.

======================  ==================================================  =====================
kind                    what it reads                                       tasks
======================  ==================================================  =====================
``url_list``            URL lists (Parquet/CSV/JSONL) downloaded into raw   captioning, conversation
                        img2dataset shards                                  (long descriptions),
                                                                            detection; OCR tasks via ``ocr``
``coco``                COCO-style detection JSON (Objects365) + images     detection
``grit_jsonl``          GRIT-style JSONL (image, caption, ref_exps)+images  detection
``internvl_jsonl``      InternVL JSONL (conversations; one, several or no   any
                        images) + an image folder
``webdataset``          WebDataset tars of images + InternVL ``json``       any
``published``           a dataset as its publisher ships it, read through   any
                        a preset (``tasks.published``)
======================  ==================================================  =====================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipelines.stage import Unit
from pipelines.storage import Storage

OCR_TASKS = ("ocr_large", "ocr_small")


@dataclass
class TaskContext:
    """What a kind needs besides the source: storage, the task stage's settings, a language detector."""

    storage: Storage
    settings: Any  # tasks.build.TaskSettings
    detect: Callable[[str], str] | None = None  # text -> language code, for `language: auto`
    extra: dict = field(default_factory=dict)


class Kind:
    """The base of every source kind (see the module docstring)."""

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...] | None] = None  # None: any task
    translatable: ClassVar[bool] = False
    downloads: ClassVar[bool] = False
    needs_image_root: ClassVar[bool] = False

    def problems(self, source, task_names: list[str]) -> list[tuple[str, str]]:
        """What keeps this kind from serving ``source`` as configured: ``(field, message)`` pairs."""
        found: list[tuple[str, str]] = []
        if self.tasks is not None and source.task not in self.tasks and source.task in task_names:
            found.append(("task", f"a {self.name} source feeds {', '.join(self.tasks)}, not {source.task!r}"))
        if source.translate_to and not self.translatable_for(source):
            found.append(("translate_to", self.why_not_translatable(source)))
        if source.translate_to and source.language != "en":
            found.append(("translate_to", f"translation is from English; this source's language is "
                                          f"{source.language!r} (set language: en, or drop translate_to)"))
        if source.ocr is not None:
            found.append(("ocr", f"OCR runs on downloaded images (url_list sources with an OCR task); "
                                 f"a {self.name} source brings its own annotations"))
        if self.needs_image_root and source.image_root is None and source.images_from is None:
            found.append(("image_root", f"a {self.name} source needs `image_root`, the folder its annotation "
                                        "files' image paths are relative to"))
        if source.images_from is not None and not self.downloads:
            found.append(("images_from", "only url_list sources reuse another source's downloaded images"))
        if source.images_from is None and not source.locations:
            found.append(("locations", "needs `locations` (files, globs or URIs), or `images_from` another source"))
        return found

    def translatable_for(self, source) -> bool:
        return self.translatable

    def why_not_translatable(self, source) -> str:
        return f"{self.name} sources have no texts to translate"

    def built_by_task_stage(self, source) -> bool:
        """False when another stage (OCR) writes this source's task tables."""
        return True

    def ocr_input(self, source) -> str | None:
        """The raw-shard folder whose images the OCR stage reads for this source (None: none)."""
        return source.images_from or source.name

    def purposes(self, source) -> list[str]:
        """Prompt pools the source's samples draw instructions from (checked before any work)."""
        return []

    def units(self, source, ctx: TaskContext) -> Iterator[Unit]:
        raise NotImplementedError

    def items(self, source, unit: Unit, ctx: TaskContext, images, drops: Counter) -> Iterator:
        """Drafts (translatable) or finished TaskSamples of one unit; drops counted in ``drops``."""
        raise NotImplementedError


REGISTRY: dict[str, Kind] = {}


def register(kind_class: type[Kind]) -> type[Kind]:
    REGISTRY[kind_class.name] = kind_class()
    return kind_class


def kind_of(source) -> Kind:
    """The registered kind of ``source`` (``source.kind`` may be a str or a str enum)."""
    _load_builtin_kinds()
    name = str(getattr(source.kind, "value", source.kind))
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"source {source.name!r}: unknown kind {name!r}; the kinds are {sorted(REGISTRY)}") from None


def kind_names() -> list[str]:
    _load_builtin_kinds()
    return sorted(REGISTRY)


def _load_builtin_kinds() -> None:
    import tasks.published.kind  # noqa: F401 - registers the published kind
    import tasks.sources  # noqa: F401 - registers the built-in kinds


@register
class PdfKind(Kind):
    """PDF files (``locations``: a folder or bucket, globs): the PDF stage (``pdf/``) renders each page and
    writes the samples of the pages whose text layer is right; with ``ocr``, the other pages go through
    the OCR stage (in ``ocr.language``), whose samples join the same dataset."""

    name = "pdf"
    tasks = (*OCR_TASKS, "document")  # Table 1a's OCR (large), or Table 1b's document group

    def problems(self, source, task_names: list[str]) -> list[tuple[str, str]]:
        return super().problems(source.model_copy(update={"ocr": None}), task_names)  # `ocr` is welcome here

    def built_by_task_stage(self, source) -> bool:
        return False

    def ocr_input(self, source) -> str | None:
        return f"{source.name}-ocr" if source.ocr is not None else None
