"""Refusals quote what was sent, but only a bounded preview of it."""

from __future__ import annotations

import pytest

from mcp_memalpha import CallContext, Memory
from mcp_memalpha.errors import MAX_ECHO_CHARS, InvalidArgument, bounded
from mcp_memalpha.tools import execute


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("memory_delete", {"memory_type": "semantic", "memory_id": "s-" + "x" * 1_000_000}),
        ("memory_list", {"memory_type": "episodic", "cursor": "c" * 1_000_000}),
        ("search_memory", {"query": "herons", "x" * 1_000_000: 1}),
    ],
)
def test_a_megabyte_argument_is_not_echoed_whole(memory: Memory, tool: str, arguments: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument) as error:
        execute(memory, CallContext(), tool, arguments)
    message = str(error.value)
    assert len(message) < MAX_ECHO_CHARS + 400, message[:200]
    assert "characters cut]" in message


def test_a_bounded_preview_keeps_the_head_and_the_hint() -> None:
    assert bounded("short") == "short"
    cut = bounded("memory_id " + "x" * 10_000 + " (ids look like 'e-7kq2mx')")
    assert cut.startswith("memory_id xxx") and cut.endswith("(ids look like 'e-7kq2mx')")
    assert "[9,437 characters cut]" in cut and len(cut) < MAX_ECHO_CHARS + 40
