"""The curator for real: spawned `mcp-memalpha serve --policy default` processes load the embedded
SmolLM2 GGUF with llama.cpp, curate forwarded chunks, survive a SIGKILL mid-job, and undo."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

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


# A curator's attempt in a process of its own: it queues the chunk, claims the job and writes two
# of its lines through the curator's adapter (fenced by its lease), then waits to be killed. The
# server's own curator writes its calls in one burst after generating, too fast to kill in between.
KILLED_ATTEMPT = """
import sys, time
from pathlib import Path
from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.curation import make_execute
from mcp_memalpha.jobs import JobQueue
settings = Settings(data_dir=Path(sys.argv[1]), policy_lease_seconds=2)
with Memory(settings) as memory:
    queue = JobQueue(memory.ledger, settings)
    chunk, date = sys.stdin.read().split("\\x00")
    queue.enqueue(CallContext(namespace=settings.namespace), chunk, date)
    claim = queue.claim("doomed-worker")
    ctx = CallContext(namespace=claim.job.namespace, source="policy", job_id=claim.job.id)
    execute = make_execute(memory, ctx, fence=queue.fence(claim.job.id, claim.owner))
    ids = [execute("new_memory_insert", {"memory_type": "episodic", "content": line}).output["memory_id"]
           for line in chunk.splitlines()[:2]]
    print(claim.job.id, *ids, flush=True)
    time.sleep(600)
"""


async def test_a_job_killed_after_its_first_writes_completes_exactly_once_after_restart(tmp_path: Path) -> None:
    """An attempt is killed after it has written (so the next claim must revert those writes), and
    the chunk's memories end up there once, written by the server's curator: the killed attempt's
    are tombstones."""
    data = tmp_path / "data"
    chunk, date = CHUNKS[0]
    lease = {"MEMALPHA_POLICY_LEASE_SECONDS": "2"}
    doomed = subprocess.Popen(
        [sys.executable, "-c", KILLED_ATTEMPT, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert doomed.stdin is not None and doomed.stdout is not None
    doomed.stdin.write(f"{chunk}\x00{date}")
    doomed.stdin.close()
    job_id, *written = doomed.stdout.readline().split()
    assert len(written) == 2, "the doomed attempt did not write"
    doomed.send_signal(signal.SIGKILL)  # it has written; the job holds its lease
    doomed.wait()
    killed = set(written)
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
