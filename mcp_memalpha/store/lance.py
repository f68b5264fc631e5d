"""LanceDB, imported without the REST client a local table never uses.

`import lancedb` runs `lance_namespace_urllib3_client/__init__.py`, which imports that generated
REST client's every API class and model: 12 MB of a server's memory and ~0.4 s of its first
search, for a client that only a remote catalog calls (docs/benchmarks.md, "Footprint"). lancedb
itself only needs a few of the model submodules. So the package's `__init__` is deferred: the
package exists with its `__path__` (submodules import as usual), and the first attribute read
from the package itself runs the real `__init__`, so nothing that uses the client breaks.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

DEFERRED = "lance_namespace_urllib3_client"


class _DeferredInitLoader(importlib.abc.Loader):
    """Creates the package as its own loader would, and runs its `__init__` on first use."""

    def __init__(self, real: importlib.abc.Loader) -> None:
        self._real = real
        self._lock = threading.RLock()

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        started = False

        def __getattr__(name: str) -> Any:
            nonlocal started
            with self._lock:  # re-entrant: the real __init__ may read its own names
                if not started:
                    started = True
                    self._real.exec_module(module)
                    if module.__dict__.get("__getattr__") is __getattr__:
                        del module.__dict__["__getattr__"]
            try:
                return module.__dict__[name]
            except KeyError:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from None

        module.__dict__["__getattr__"] = __getattr__


class _DeferredInitFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return spec
        spec.loader = _DeferredInitLoader(spec.loader)
        return spec


_installed = threading.Lock()


def lancedb() -> ModuleType:
    """The `lancedb` module; the first call (before anything else imports it) imports it lean."""
    with _installed:
        if DEFERRED not in sys.modules and not any(isinstance(f, _DeferredInitFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _DeferredInitFinder())
    import lancedb as module

    return module
