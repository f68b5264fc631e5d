"""SIGKILL a server in the middle of a stream of writes; after a restart nothing acknowledged is lost."""

from __future__ import annotations

import random
import signal
import sqlite3
from contextlib import suppress
from pathlib import Path

import anyio
import pytest

from mcp_memalpha import Memory, Settings
from tests.conftest import call, connect, http_server

pytestmark = pytest.mark.anyio

KILLS = 3


async def write_until_killed(
    url: str, process, round_no: int, acked: dict[str, str], deleted: set[str], rng: random.Random
) -> None:
    """Stream inserts (and some deletes) while the server is SIGKILLed at a random moment.

    The kill comes after a random number of acknowledged writes plus a random few milliseconds,
    so it lands mid-stream however fast the machine is.
    """
    target = len(acked) + rng.randint(30, 120)
    delay = rng.uniform(0, 0.01)

    async def killer() -> None:
        while len(acked) < target:
            await anyio.sleep(0.001)
        await anyio.sleep(delay)
        process.send_signal(signal.SIGKILL)

    with suppress(Exception):
        async with connect(url) as client, anyio.create_task_group() as group:
            group.start_soon(killer)
            i = 0
            while process.poll() is None:
                token = f"r{round_no}w{i}"
                result = await call(
                    client, "new_memory_insert", memory_type="semantic", content=f"write {token} zz{token}"
                )
                acked[result["memory_id"]] = token
                if i % 7 == 3:
                    # Forget the victim first: a delete cut off by the kill may or may not have landed.
                    victim = min(acked)
                    acked.pop(victim)
                    await call(client, "memory_delete", memory_type="semantic", memory_id=victim)
                    deleted.add(victim)
                i += 1
    process.wait()
    assert process.returncode == -signal.SIGKILL


async def test_sigkill_mid_stream_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(7)
    acked: dict[str, str] = {}
    deleted: set[str] = set()
    for round_no in range(KILLS):
        with http_server(data) as (url, process):
            await write_until_killed(url, process, round_no, acked, deleted, rng)
    assert len(acked) > 60 and deleted

    with http_server(data) as (url, _process):
        async with connect(url) as client:
            ids = list(acked)
            for start in range(0, len(ids), 100):
                got = await call(client, "memory_get", memory_ids=ids[start : start + 100])
                assert got["missing"] == []
            gone = await call(client, "memory_get", memory_ids=sorted(deleted)[:100])
            assert gone["memories"] == []  # acknowledged deletes stay deleted
            listed = await call(client, "memory_list", memory_type="semantic", limit=1)
            assert listed["total"] >= len(acked)  # a write in flight at the kill may have landed unacknowledged
            for memory_id, token in acked.items():
                found = await call(client, "search_memory", query=f"zz{token}", search_method="bm25", top_k=1)
                assert found["results"][0]["memory_id"] == memory_id

    conn = sqlite3.connect(data / "memory.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Memory(Settings(data_dir=data)) as memory:
        memory.sync_index()
        assert memory.index.ids() == {item.id for item in memory.iter_items(None)}
