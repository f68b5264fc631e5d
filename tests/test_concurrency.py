"""Two server processes (two client windows) on one data directory, writing at the same time."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_memalpha import Memory, Settings
from tests.conftest import call, connect, stdio_params

pytestmark = pytest.mark.anyio

WRITES_PER_PROCESS = 300


async def write_many(client: Client, name: str, shared_id: str, out: dict[str, list]) -> None:
    """Inserts, updates of its own items, and contended updates of one shared item."""
    own = []
    for i in range(WRITES_PER_PROCESS):
        inserted = await call(
            client, "new_memory_insert", memory_type="episodic", content=f"{name} wrote entry {i} token{name}x{i}"
        )
        own.append(inserted["memory_id"])
        if i % 10 == 0:
            await call(
                client,
                "memory_update",
                memory_type="episodic",
                memory_id=inserted["memory_id"],
                new_content=f"{name} revised entry {i} token{name}x{i}",
                expected_version=1,
            )
        if i % 5 == 0:  # contend for the shared item: read its version, try to bump it
            current = (await call(client, "memory_get", memory_ids=[shared_id]))["memories"][0]
            result = await client.call_tool(
                "memory_update",
                {
                    "memory_type": "semantic",
                    "memory_id": shared_id,
                    "new_content": f"counter bumped by {name} {i}",
                    "expected_version": current["version"],
                },
            )
            if result.is_error:
                assert "expected_version" in result.content[0].text  # type: ignore[union-attr]
                out["conflicts"].append(name)
            else:
                out["bumps"].append(name)
    out[name] = own


async def all_ids(client: Client, memory_type: str) -> list[str]:
    ids, cursor = [], None
    while True:
        args = {"memory_type": memory_type, "limit": 100} | ({"cursor": cursor} if cursor else {})
        page = await call(client, "memory_list", **args)
        ids += [m["memory_id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def test_two_processes_lose_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with connect(stdio_params(data)) as first, connect(stdio_params(data)) as second:
        shared = await call(first, "new_memory_insert", memory_type="semantic", content="counter starts")
        out: dict[str, list] = {"bumps": [], "conflicts": []}
        async with anyio.create_task_group() as group:
            group.start_soon(write_many, first, "alpha", shared["memory_id"], out)
            group.start_soon(write_many, second, "beta", shared["memory_id"], out)

        written = set(out["alpha"]) | set(out["beta"])
        assert len(written) == 2 * WRITES_PER_PROCESS
        for client in (first, second):
            # every write is present, listed and fetchable in both processes
            assert set(await all_ids(client, "episodic")) == written
            # and searchable: each process finds the other's writes by their unique token
            for name in ("alpha", "beta"):
                for i in range(0, WRITES_PER_PROCESS, 37):
                    found = await call(client, "search_memory", query=f"token{name}x{i}", search_method="bm25", top_k=1)
                    assert found["results"][0]["text"].endswith(f"entry {i} token{name}x{i}")
            revised = await call(client, "search_memory", query="alpha revised entry 10", search_method="bm25", top_k=1)
            assert revised["results"][0]["version"] == 2

        # every successful bump is one version; refused ones changed nothing
        final = (await call(first, "memory_get", memory_ids=[shared["memory_id"]]))["memories"][0]
        assert final["version"] == 1 + len(out["bumps"])
        assert len(out["bumps"]) + len(out["conflicts"]) == 2 * WRITES_PER_PROCESS // 5

    with Memory(Settings(data_dir=data)) as memory:
        memory.sync_index()
        live = {item.id for item in memory.iter_items(None)}
        assert memory.index.ids() == live == written | {shared["memory_id"]}
