"""mcp-memalpha: a long-term memory (core, episodic, semantic) served over MCP.

The public Python API is the memory service; the MCP server, the curator policy and the
training package are all built on it.
"""

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

__version__ = "0.1.0"

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
