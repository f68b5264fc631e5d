"""Memorize-job claims on the PostgreSQL ledger: `FOR UPDATE SKIP LOCKED`, so claimers on several
hosts share the queue without waiting for each other or for other writers, under the leases and
exactly-once rules of `jobs`. Runs on the session's throwaway cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mcp_memalpha import CallContext, Settings
from mcp_memalpha.jobs import JobQueue
from mcp_memalpha.store.ledger import ItemRow
from mcp_memalpha.store.postgres import PostgresLedger
from tests import postgres

AT = "2025-01-01T00:00:00Z"


@pytest.fixture
def url(postgres_cluster: postgres.Cluster) -> Iterator[str]:
    with postgres_cluster.database() as fresh:
        yield fresh


def _queue(url: str, tmp_path: Path, chunks: int) -> tuple[PostgresLedger, JobQueue, list[str]]:
    """A ledger of its own (another process's pool) and its queue, with `chunks` jobs queued."""
    ledger = PostgresLedger(url).open()
    queue = JobQueue(ledger, Settings(data_dir=tmp_path / "data", database_url=url))
    jobs = [queue.enqueue(CallContext(), f"User: fact number {i}.")[0].id for i in range(chunks)]
    return ledger, queue, jobs


def test_a_claim_waits_neither_for_a_writer_nor_for_another_claim(url: str, tmp_path: Path) -> None:
    """While another process's write transaction holds the head row, and another claimer holds the
    first job's row, a claim still goes through: it takes the second job (SKIP LOCKED). A claim
    under the writers' lock would wait for the writer, which commits only once the claim returns."""
    import psycopg

    ledger, queue, jobs = _queue(url, tmp_path, 2)
    writer = PostgresLedger(url).open()
    try:
        with writer.write() as held, psycopg.connect(url, autocommit=True) as claimer:
            held.sql("UPDATE ledger_head SET seq = seq WHERE id = 1")
            claimer.execute("BEGIN")
            claimer.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (jobs[0],))
            with ThreadPoolExecutor(1) as pool:
                claim = pool.submit(queue.claim, "w2").result(timeout=60)
            claimer.execute("ROLLBACK")
        assert claim is not None and claim.job.id == jobs[1] and claim.job.state == "running"
    finally:
        writer.close()
        ledger.close()


def test_a_claim_outside_the_writers_lock_may_not_log(url: str, tmp_path: Path) -> None:
    ledger, _, _ = _queue(url, tmp_path, 0)
    item = ItemRow("m-1", "default", "semantic", "x", None, None, AT, AT, 1, "client", None, None)
    try:
        with pytest.raises(RuntimeError, match="serialize=False may not log"), ledger.write(serialize=False) as tx:
            tx.log("insert", item, AT)
        with ledger.read() as tx:
            assert tx.head() == 0
    finally:
        ledger.close()


def test_claimers_on_several_connections_share_the_queue_each_job_once(url: str, tmp_path: Path) -> None:
    """Four claimers, each with its own pool, drain 40 jobs, 8 of them interrupted attempts (handed
    back with a write to revert: the claim that takes one holds the writers' lock too): every job
    is claimed exactly once more and finished, none is left, and each interrupted attempt's write
    is reverted exactly once."""
    ledger, queue, jobs = _queue(url, tmp_path, 40)
    interrupted = []
    for number in range(8):
        claim = queue.claim("dead")
        assert claim is not None
        item = ItemRow(f"m-{number}", "default", "semantic", "x", None, None, AT, AT, 1, "policy", claim.job.id, None)
        with ledger.fenced(queue.fence(claim.job.id, claim.owner)), ledger.write() as tx:
            tx.insert_item(item)
            tx.log("insert", item, AT)
        assert queue.release(claim.job.id, claim.owner)
        interrupted.append(item.id)
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(_: int) -> None:
        own = PostgresLedger(url).open()
        mine = JobQueue(own, queue.settings)
        try:
            while (claim := mine.claim("worker")) is not None:
                with lock:
                    claimed.append(claim.job.id)
                assert mine.finish(claim.job.id, claim.owner, {"calls": []})
        finally:
            own.close()

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(drain, range(4)))
        assert sorted(claimed) == sorted(jobs)  # each once: none twice, none left
        with ledger.read() as tx:
            rows = [tx.job(job_id) for job_id in jobs]
            assert None not in rows and {row.state for row in rows if row is not None} == {"done"}
            assert tx.count_unfinished_jobs("default") == 0
            assert all([op.op for op in tx.history(item_id)] == ["insert", "undo"] for item_id in interrupted)
    finally:
        ledger.close()


def test_a_worker_starts_another_process_job_on_its_notification(url: str, tmp_path: Path) -> None:
    """`CurationWorker` LISTENs on `memalpha_jobs` (`Ledger.watch_jobs`): a job queued through
    another process's ledger is run long before the worker's next poll (10 minutes here)."""
    from mcp_memalpha.curation import CurationWorker
    from mcp_memalpha.memory import Memory
    from tests.test_curation import SCRIPT, ScriptedCurator

    ledger, queue, _ = _queue(url, tmp_path, 0)
    with Memory(Settings(data_dir=tmp_path / "worker", database_url=url)) as memory:
        worker = CurationWorker(memory, lambda: ScriptedCurator(SCRIPT[1:3]), poll_seconds=600)
        worker.start()
        try:
            assert worker.loaded.wait(60) and worker.load_error is None
            postgres.listener(url, "memalpha_jobs")
            time.sleep(1.0)  # its first claim found the queue empty; the next poll is 10 minutes away
            job, _ = queue.enqueue(CallContext(), "User: I moved to Porto.")
            for _ in range(600):
                if queue.status(CallContext(), job.id)[0].finished:
                    break
                time.sleep(0.05)
            assert queue.status(CallContext(), job.id)[0].state == "done"
        finally:
            worker.stop()
            ledger.close()
