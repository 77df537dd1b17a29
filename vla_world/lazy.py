"""Package namespaces whose names load on first use (PEP 562), shared by the packages that need it.

Why: `vla_world.data`, `vla_world.model` and `vla_world.qa` re-export names from modules that
import the devkit, torch or shapely. Importing one light module of such a package (the record
contract, the presets, a config) must not pay for the heavy ones, so each package's `__getattr__`
imports a name's module only when the name is first used.

    _EXPORTS = {"SampleRecord": "records", "load_records": "cache"}
    __all__ = list(_EXPORTS)
    __getattr__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that resolves `name` from `package.<exports[name]>` when first asked for."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
