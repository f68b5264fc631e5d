"""`mcp-memalpha worker`: a server with curation off queues the memorize jobs and loads no model;
worker loops (in process, with a scripted curator) claim them from the shared queue and apply each
exactly once."""

from __future__ import annotations

import sqlite3
import time
from functools import partial
from pathlib import Path

import anyio.to_thread
import pytest
from mcp import Client

from mcp_memalpha import Settings
from mcp_memalpha.curation import run_worker
from mcp_memalpha.server import build_server
from tests.conftest import call
from tests.test_curation import SCRIPT, ScriptedCurator

pytestmark = pytest.mark.anyio


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
