"""The preset registry: a named :class:`~tasks.published.mapping.Format` for a dataset as its publisher ships it.

>>> register_preset(Preset("my_set", {"reader": "jsonl", "image": "img", "caption": "text",
...                                   "build": "caption"}, about="..."))  # doctest: +SKIP
>>> preset("lsvt").format["reader"]  # doctest: +SKIP
'json'

Presets live in modules of this package named ``pretrain*.py`` and ``finetune*.py``; each registers
its presets when imported, and :func:`preset` imports them all on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (record, extras) -> (record, extras), or None to drop the record (counted `unreadable_record`)
Adapt = Callable[[Any, dict], tuple[Any, dict] | None]


@dataclass(frozen=True)
class Preset:
    """A dataset's reading: its :class:`Format` fields, an optional ``adapt`` step for a record shape a
    field mapping cannot name, and ``about``: the files expected and where the schema was checked."""

    name: str
    format: dict[str, Any]
    about: str = ""
    adapt: Adapt | None = None
    files: dict[str, str] = field(default_factory=dict)  # what goes where, for the README: path -> contents


PRESETS: dict[str, Preset] = {}
_loaded = False


def register_preset(preset: Preset) -> Preset:
    if preset.name in PRESETS and PRESETS[preset.name] is not preset:
        raise ValueError(f"preset {preset.name!r} is registered twice")
    PRESETS[preset.name] = preset
    return preset


def preset(name: str) -> Preset:
    """The registered preset ``name`` (KeyError listing the presets otherwise)."""
    _load()
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; the presets are {sorted(PRESETS)}") from None


def preset_names() -> list[str]:
    _load()
    return sorted(PRESETS)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    import tasks.published as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith(("pretrain", "finetune")):
            importlib.import_module(f"tasks.published.{module.name}")
    _loaded = True
