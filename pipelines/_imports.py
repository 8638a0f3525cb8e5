"""Lazy imports of heavy dependencies, with the extra to install when one is missing."""

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    """A stage needs a package that is not installed; the message names the extra to install."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with a hint naming the vlmix extra that provides it.

    >>> ray = require("ray", "download")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependency(
            f"{module!r} is needed here but not installed ({err}). Install it with: pip install 'vlmix[{extra}]'"
        ) from err


def lazy_exports(package: str, names: dict[str, str], extra: str | None = None):
    """A package's ``__getattr__`` that imports each public name from its module on first use, so
    importing the package stays cheap; a missing dependency fails with the extra that provides it.

    The one style of every vlmix package's public face (``__init__.py``)::

        _LAZY = {"run_ocr_stage": "ocr.stage", "build_engine": "ocr.engines"}
        __getattr__ = lazy_exports(__name__, _LAZY, extra="ocr")
        __all__ = ["OcrSettings", *_LAZY]
    """

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = require(names[name], extra) if extra else importlib.import_module(names[name])
        return getattr(module, name)

    return __getattr__
