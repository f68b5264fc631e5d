"""mcp-memalpha: a long-term memory (core, episodic, semantic) served over MCP.

The public Python API is the memory service; the MCP server, the curator policy and the
training package are all built on it. Its names are imported when first used (PEP 562), so a
command or server that needs one module of the package does not import the whole service.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_memalpha.context import CallContext
    from mcp_memalpha.errors import (
        CapacityExceeded,
        InvalidArgument,
        MemalphaError,
        NotFound,
        StorageError,
        VersionConflict,
    )
    from mcp_memalpha.memory import Memory
    from mcp_memalpha.settings import Settings

# The one version: pyproject reads it from here (a look-up in the installed metadata would cost a
# scan of every distribution at each start); `mcp-memalpha --version` and the MCP handshake report it.
__version__ = "0.1.0"

_HOMES = {
    "CallContext": "mcp_memalpha.context",
    "CapacityExceeded": "mcp_memalpha.errors",
    "InvalidArgument": "mcp_memalpha.errors",
    "MemalphaError": "mcp_memalpha.errors",
    "Memory": "mcp_memalpha.memory",
    "NotFound": "mcp_memalpha.errors",
    "Settings": "mcp_memalpha.settings",
    "StorageError": "mcp_memalpha.errors",
    "VersionConflict": "mcp_memalpha.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mcp_memalpha' has no attribute {name!r}")
    return getattr(import_module(home), name)


__all__ = [
    "CallContext",
    "CapacityExceeded",
    "InvalidArgument",
    "MemalphaError",
    "Memory",
    "NotFound",
    "Settings",
    "StorageError",
    "VersionConflict",
    "__version__",
]
