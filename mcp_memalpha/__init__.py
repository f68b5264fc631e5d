"""mcp-memalpha: a long-term memory (core, episodic, semantic) served over MCP.

The public Python API is the memory service; the MCP server, the curator policy and the
training package are all built on it.
"""

from importlib.metadata import PackageNotFoundError, version

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

try:  # one version, pyproject's: what `mcp-memalpha --version` and the MCP handshake report
    __version__ = version("mcp-memalpha")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

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
