"""How to start this installation's server as a process (evaluations, tests, benchmarks spawn it)."""

from __future__ import annotations

import sys
from pathlib import Path


def launch_command() -> list[str]:
    """How to start this installation's `mcp-memalpha` (for spawning servers: evals, tests, benchmarks)."""
    script = Path(sys.executable).parent / "mcp-memalpha"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcp_memalpha"]
