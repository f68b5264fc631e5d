"""Serving beyond one process: `/healthz` for load balancers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_memalpha import Settings
from mcp_memalpha.server import ServerState
from mcp_memalpha.server import health as health_of

pytestmark = pytest.mark.anyio


async def test_healthz_is_unavailable_while_the_memory_is_not_open(tmp_path: Path) -> None:
    """Before the lifespan opened the memory (or after it closed it) the server cannot serve."""
    status, body = health_of(ServerState(Settings(data_dir=tmp_path / "data")))
    assert status == 503 and body["status"] == "unavailable"
    assert body["ledger"] == {
        "reachable": False,
        "error": "the memory store is not open (the server is starting or stopping)",
    }
