"""`mcp-memalpha worker`: a server with curation off queues the memorize jobs and loads no model;
worker loops claim them from the shared queue and apply each exactly once: in process with a
scripted curator, and for real, as spawned worker processes running the embedded SmolLM2
(llama.cpp) beside a spawned HTTP server started with `--no-curation`."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from functools import partial
from pathlib import Path

import anyio.to_thread
import pytest
from mcp import Client

from mcp_memalpha import Settings
from mcp_memalpha.curation import run_worker
from mcp_memalpha.server import build_server
from tests.conftest import call, command, connect, http_server, server_env
from tests.test_curation import SCRIPT, ScriptedCurator
from tests.test_curation_e2e import CHUNKS

pytestmark = pytest.mark.anyio

WORKER_TIMEOUT_S = 600


def worker(data: Path, *args: str) -> subprocess.Popen[str]:
    """A spawned `mcp-memalpha worker --once` on `data`'s queue (its log on stderr)."""
    return subprocess.Popen(
        [*command(), "worker", "--data-dir", str(data), "--policy", "default", "--once", *args],
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    """Wait for a worker to drain the queue and exit 0; its log."""
    _, log = process.communicate(timeout=WORKER_TIMEOUT_S)
    assert process.returncode == 0, log
    return log


def tagged_ops(data: Path) -> dict[str, list[str]]:
    """The operations each job's writes logged, by job id (read from the ledger itself)."""
    with sqlite3.connect(data / "memory.db") as db:
        rows = db.execute("SELECT job_id, op FROM ops WHERE job_id IS NOT NULL ORDER BY seq").fetchall()
    ops: dict[str, list[str]] = {}
    for job_id, op in rows:
        ops.setdefault(job_id, []).append(op)
    return ops


def no_curator() -> ScriptedCurator:
    raise AssertionError("a server with curation off must not load the curator")


async def test_a_server_without_curation_only_queues_and_a_worker_runs_the_job(tmp_path: Path) -> None:
    """In process: the server's state runs no job loop; `run_worker` (the worker command's loop)
    drains the queue it shares and returns."""
    settings = Settings(data_dir=tmp_path / "data", policy="default", curation=False)
    curator = ScriptedCurator(SCRIPT)
    async with Client(build_server(settings, load_curator=no_curator)) as client:
        job = await call(client, "memorize", chunk="User: I opened my restaurant.", timestamp="2024-01-03")
        queued = await call(client, "memorize_status", job_id=job["job_id"], wait_seconds=1)
        assert queued["state"] == "queued"
        error = await anyio.to_thread.run_sync(lambda: run_worker(settings, until_idle=True, load=lambda: curator))
        assert error is None
        status = await call(client, "memorize_status", job_id=job["job_id"])
        assert status["state"] == "done" and status["attempts"] == 1 and status["executed"] == 4
    assert curator.chunks == [("User: I opened my restaurant.", "2024-01-03")]


def test_a_worker_that_cannot_load_its_curator_says_why(tmp_path: Path) -> None:
    def broken() -> ScriptedCurator:
        raise RuntimeError("no model here")

    settings = Settings(data_dir=tmp_path / "data", policy="default")
    assert run_worker(settings, until_idle=True, load=broken) == "RuntimeError: no model here"


async def test_two_worker_loops_sharing_a_queue_run_each_job_once(tmp_path: Path) -> None:
    """Two `run_worker` loops, each with its own ledger connection as two processes have, drain one
    queue of nine jobs: every chunk is curated once, by one of them."""
    settings = Settings(data_dir=tmp_path / "data", policy="default", curation=False)
    curators = [ScriptedCurator(SCRIPT[1:3], before_call=lambda _: time.sleep(0.01)) for _ in range(2)]
    chunks = [f"User: fact number {i}." for i in range(9)]
    async with Client(build_server(settings, load_curator=no_curator)) as client:
        jobs = [(await call(client, "memorize", chunk=chunk))["job_id"] for chunk in chunks]

        def drain(curator: ScriptedCurator) -> None:
            assert run_worker(settings, until_idle=True, load=lambda: curator) is None

        async with anyio.create_task_group() as group:
            for curator in curators:
                group.start_soon(anyio.to_thread.run_sync, partial(drain, curator))
        statuses = [await call(client, "memorize_status", job_id=job) for job in jobs]
    assert all(s["state"] == "done" and s["attempts"] == 1 and s["executed"] == 2 for s in statuses), statuses
    curated = [chunk for curator in curators for chunk, _ in curator.chunks]
    assert sorted(curated) == sorted(chunks)
    ops = tagged_ops(settings.data_dir)
    assert all(ops[job] == ["insert", "insert"] for job in jobs)


async def test_a_worker_process_applies_a_job_a_server_without_curation_queued(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data, "--policy", "default", "--no-curation") as (url, server):
        async with connect(url) as client:
            chunk, date = CHUNKS[0]
            job = await call(client, "memorize", chunk=chunk, timestamp=date)
            queued = await call(client, "memorize_status", job_id=job["job_id"], wait_seconds=2)
            assert queued["state"] == "queued"  # nobody in the server runs it
            log = finish(worker(data))
            status = await call(client, "memorize_status", job_id=job["job_id"])
            assert status["state"] == "done" and status["attempts"] == 1, status
            assert status["executed"] >= 1
            written = []
            for kind in ("episodic", "semantic"):
                written += (await call(client, "memory_list", memory_type=kind))["memories"]
            assert len(written) == status["executed"] and all(m["source"] == "policy" for m in written)
        assert server.poll() is None
    assert log.count(f"memorize job {job['job_id']} done") == 1
    # every write the job made is one insert: no attempt was reverted and rerun
    assert tagged_ops(data)[job["job_id"]] == ["insert"] * status["executed"]


async def test_two_workers_on_one_queue_never_apply_a_job_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data, "--policy", "default", "--no-curation") as (url, _):
        async with connect(url) as client:
            halves = [("\n".join(c.splitlines()[i : i + 3]), d) for c, d in CHUNKS for i in (0, 3)]
            jobs = [(await call(client, "memorize", chunk=c, timestamp=d))["job_id"] for c, d in halves]
            logs = [finish(p) for p in [worker(data), worker(data)]]
            statuses = [await call(client, "memorize_status", job_id=j) for j in jobs]
    assert all(s["state"] == "done" and s["attempts"] == 1 for s in statuses), statuses
    done = [re.findall(r"memorize job (\S+) done", log) for log in logs]
    assert sorted(done[0] + done[1]) == sorted(jobs)  # each job finished by exactly one worker
    ops = tagged_ops(data)
    for job_id, status in zip(jobs, statuses, strict=True):
        assert ops.get(job_id, []) == ["insert"] * status["executed"]
