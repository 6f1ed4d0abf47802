"""Names a package exports without importing them with it (a PEP 562 module ``__getattr__``).

``models.pifu`` and ``models.pixel2isdf`` import their config dataclasses only; their networks
(torch) are imported on first access, so ``from models.pifu import PifuNet`` works as before
while the Snakefile's parse, which checks a given checkpoint's settings against these configs,
imports nothing heavy (tests/test_parse.py).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is ``names[name]``'s (a module's
    name) attribute of that name, imported on first access and then kept in the package."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
