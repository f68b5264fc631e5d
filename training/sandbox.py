"""A fresh, isolated memory for one rollout (or one baseline), and tool calls on it.

Every call goes through the server curator's own adapter (`mcp_memalpha.curation.make_execute`
over `mcp_memalpha.tools.execute`, the definitions the MCP server publishes): there is no second
implementation of any tool, nor of the adapter, in training. Each sandbox has its own temporary
data directory (SQLite ledger + LanceDB index), removed on close.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp_memalpha.policy.calls import CallOutcome, ToolDef

from mcp_memalpha.curation import curator_tools, make_execute
from mcp_memalpha.memory import CallContext, Memory, render_hit
from mcp_memalpha.settings import Settings
from mcp_memalpha.tokens import count_tokens
from mcp_memalpha.tools import TOOLS_BY_NAME


def tool_defs() -> list[ToolDef]:
    """The tools as the policy is told about them: the server curator's own (`curator_tools`)."""
    return curator_tools()


class Sandbox:
    """One memory in a temporary folder; `execute` is the policy's `Execute` callable."""

    def __init__(self, *, core_capacity_tokens: int = 512, root: Path | None = None, source: str = "policy") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="memalpha-rollout-", dir=root))
        settings = Settings(data_dir=self.folder, core_capacity_tokens=core_capacity_tokens)
        self.memory = Memory(settings).open()
        self.ctx = CallContext(source=source)  # type: ignore[arg-type]
        # every tool: the reader and the harness call more than the policy may (run_calls limits it)
        self._execute = make_execute(self.memory, self.ctx, allowed=tuple(TOOLS_BY_NAME))
        self.calls = 0
        self.seconds = 0.0  # spent inside tool execution only

    def execute(self, name: str, arguments: dict[str, Any]) -> CallOutcome:
        """Run a call; a refused call is an outcome with its error, never an exception."""
        started = time.perf_counter()
        try:
            return self._execute(name, arguments)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run a call that must succeed (the reader's and the harness's own calls)."""
        outcome = self.execute(name, arguments)
        if not outcome.ok:
            raise RuntimeError(f"{name} failed in the sandbox: {outcome.error}")
        return dict(outcome.output)

    def contents(self) -> tuple[str, list[str]]:
        """The core paragraph and every live item as a reader sees it (`render_hit`: date, content)."""
        core = self.memory.core(self.ctx).content
        return core, [render_hit(item) for item in self.memory.iter_items(self.ctx.namespace)]

    def memory_tokens(self) -> int:
        """Size of the whole memory in tokens (core + every item as rendered for a reader)."""
        core, items = self.contents()
        return count_tokens(core) + sum(count_tokens(item) for item in items)

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def close(self) -> None:
        self.memory.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
