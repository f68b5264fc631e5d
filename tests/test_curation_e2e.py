"""The curator for real: spawned `mcp-memalpha serve --policy default` processes load the embedded
SmolLM2 GGUF with llama.cpp, curate forwarded chunks, survive a SIGKILL mid-job, and undo."""

from __future__ import annotations

import json
import signal
from importlib.resources import files
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.conftest import call, connect, http_server, policy_params

pytestmark = pytest.mark.anyio

CONVERSATION = json.loads(files("mcp_memalpha").joinpath("data/demo_conversation.json").read_text())
CHUNKS = [
    ("\n".join(f"{t['speaker']}: {t['text']}" for t in session["turns"]), session["date"])
    for session in CONVERSATION["sessions"]
]


async def snapshot(client: Client) -> dict[str, Any]:
    """Everything a reader can see: core and every live item, with versions."""
    items = {}
    for kind in ("episodic", "semantic"):
        listed = await call(client, "memory_list", memory_type=kind, limit=100)
        items.update({m["memory_id"]: (m["content"], m["version"]) for m in listed["memories"]})
    core = await call(client, "core_memory_read")
    return {"core": (core["content"], core["version"]), "items": items}


async def test_memorize_builds_policy_memory_and_undo_restores_it_exactly(tmp_path: Path) -> None:
    async with connect(policy_params(tmp_path / "data")) as client:
        chunk, date = CHUNKS[0]
        job = await call(client, "memorize", chunk=chunk, timestamp=date)
        status = await call(client, "memorize_status", job_id=job["job_id"], wait_seconds=120)
        assert status["state"] == "done", status
        assert status["executed"] >= 1 and status["attempts"] == 1
        before = await snapshot(client)
        written = [m for m in (await call(client, "memory_list", memory_type="episodic"))["memories"]]
        written += (await call(client, "memory_list", memory_type="semantic"))["memories"]
        assert len(written) == status["executed"] and all(m["source"] == "policy" for m in written)
        # every memory is one of the chunk's own statements (extractive curation by the small model)
        assert all(m["content"] in chunk for m in written)

        chunk, date = CHUNKS[1]
        second = await call(client, "memorize", chunk=chunk, timestamp=date)
        done = await call(client, "memorize_status", job_id=second["job_id"], wait_seconds=120)
        assert done["state"] == "done" and done["executed"] >= 1
        assert await snapshot(client) != before
        undone = await call(client, "memorize_undo", job_id=second["job_id"])
        assert undone["state"] == "undone" and len(undone["reverted"]) == done["executed"]
        assert await snapshot(client) == before


def inserted(status: dict[str, Any]) -> set[str]:
    """Ids of the memories the job's calls so far inserted."""
    return {c["output"]["memory_id"] for c in status["calls"] if c["ok"] and c["name"] == "new_memory_insert"}


async def test_a_job_killed_after_its_first_writes_completes_exactly_once_after_restart(tmp_path: Path) -> None:
    """The server is killed after the curator has written (so the restart must revert those writes),
    and the chunk's memories end up there once: the killed attempt's are tombstones."""
    data = tmp_path / "data"
    chunk, date = CHUNKS[0] if len(CHUNKS[0][0]) > len(CHUNKS[1][0]) else CHUNKS[1]
    lease = {"MEMALPHA_POLICY_LEASE_SECONDS": "2"}
    with http_server(data, "--policy", "default", **lease) as (url, process):
        async with connect(url) as client:
            job_id = (await call(client, "memorize", chunk=chunk, timestamp=date))["job_id"]
            with anyio.fail_after(240):
                while not (killed := inserted(status := await call(client, "memorize_status", job_id=job_id))):
                    assert status["state"] in ("queued", "running"), status
                    await anyio.sleep(0.02)
            process.send_signal(signal.SIGKILL)  # the curator has written; the job holds its lease
        process.wait()
    with http_server(data, "--policy", "default", **lease) as (url, _):
        async with connect(url) as client:
            status = await call(client, "memorize_status", job_id=job_id, wait_seconds=240)
            assert status["state"] == "done", status
            assert status["attempts"] == 2  # the killed run, then the rerun
            items, deleted = [], set()
            for kind in ("episodic", "semantic"):
                items += (await call(client, "memory_list", memory_type=kind))["memories"]
                gone = await call(client, "memory_list", memory_type=kind, deleted=True)
                deleted |= {m["memory_id"] for m in gone["memories"]}
            contents = [m["content"] for m in items]
            assert len(items) == status["executed"] and len(set(contents)) == len(contents)  # once, not twice
            assert killed <= deleted and not killed & {m["memory_id"] for m in items}  # reverted, not kept
