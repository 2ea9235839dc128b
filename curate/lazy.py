"""Deferred imports for the modules a config check must not wait for.

Reading a spec validates every stage's parameters against the stage's own
signature, so the stage's module is imported; if that import pulled in polars,
pyarrow and numpy (0.5-1 s together), a typo would be reported a second late.
`lazy_import` returns the module object at once and runs its code on the first
attribute access (the standard library's `importlib.util.LazyLoader`), so the
names resolve as usual wherever data is touched.

>>> json = lazy_import("json")
>>> json.dumps([1])
'[1]'
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

_LOCK = threading.Lock()


def lazy_import(name: str) -> ModuleType:
    """`name` as a module whose code runs on first use (imported already: that module)."""
    with _LOCK:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        loader = importlib.util.LazyLoader(spec.loader)
        spec.loader = loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loader.exec_module(module)
        return module


__all__ = ["lazy_import"]
