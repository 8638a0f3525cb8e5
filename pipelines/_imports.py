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
