"""The PostgreSQL ledger: commit order of the operation log, migrations under a lock, limits held
inside the write transaction across processes. Runs on the session's throwaway cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.errors import NamespaceFull, StorageError
from mcp_memalpha.store.ledger import CoreRow
from mcp_memalpha.store.migrations import POSTGRES_MIGRATIONS
from mcp_memalpha.store.postgres import PostgresLedger
from tests import postgres


@pytest.fixture
def url(postgres_cluster: postgres.Cluster) -> Iterator[str]:
    with postgres_cluster.database() as fresh:
        yield fresh


def _connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url, autocommit=True)


def wait_until_blocked(url: str, query_start: str) -> None:
    """Poll pg_stat_activity until a backend running a statement that starts with `query_start`
    waits on a lock (a bounded wait for a state, not a timing assertion)."""
    with _connect(url) as watcher:
        for _ in range(600):
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (query_start + "%",),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"no backend ever waited on a lock running {query_start!r}")


def follow(read_after: object, seen: list[int], mark: int) -> int:
    """What an index follower does: read every sequence number after its mark; the new mark is the highest."""
    new = read_after(mark)  # type: ignore[operator]
    seen.extend(new)
    return max([mark, *new])


def test_an_identity_column_lets_a_follower_skip_a_write(url: str) -> None:
    """The naive design, on a scratch table: the first writer draws 1 and holds its transaction
    open, the second draws 2 and commits. A follower reading "after 0" sees 2, moves its mark to 2,
    and when 1 commits, "after 2" never returns it: a write lost for the index, for ever."""
    with _connect(url) as first, _connect(url) as second, _connect(url) as reader:
        first.execute("CREATE TABLE naive_log (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body TEXT)")

        def after(mark: int) -> list[int]:
            return [row[0] for row in reader.execute("SELECT seq FROM naive_log WHERE seq > %s ORDER BY seq", (mark,))]

        seen: list[int] = []
        first.execute("BEGIN")
        (one,) = first.execute("INSERT INTO naive_log (body) VALUES ('first') RETURNING seq").fetchone()
        second.execute("BEGIN")
        (two,) = second.execute("INSERT INTO naive_log (body) VALUES ('second') RETURNING seq").fetchone()
        second.execute("COMMIT")
        mark = follow(after, seen, 0)
        first.execute("COMMIT")
        mark = follow(after, seen, mark)
        assert (one, two) == (1, 2)
        assert seen == [2]  # 1 was committed, yet the follower never saw it
        assert after(0) == [1, 2]


def test_the_head_row_makes_the_log_visible_in_commit_order(url: str) -> None:
    """Ours, interleaved the same way: the second writer cannot draw a number (it waits on the
    head row's lock) until the first commits, so the follower sees 1 before 2 and skips nothing."""
    first_ledger, second_ledger = PostgresLedger(url).open(), PostgresLedger(url).open()  # two processes' pools
    reader = PostgresLedger(url).open()
    try:

        def after(mark: int) -> list[int]:
            with reader.read() as tx:
                return [row[0] for row in tx.sql("SELECT seq FROM ops WHERE seq > ? ORDER BY seq", (mark,))]

        def core(namespace: str) -> CoreRow:
            return CoreRow(namespace, f"core of {namespace}", 1, "2025-01-01T00:00:00Z", "client", None)

        holding, release = threading.Event(), threading.Event()
        drawn: dict[str, int] = {}

        def first_writer() -> None:
            with first_ledger.write() as tx:
                drawn["first"] = tx.log("core_update", core("a"), "2025-01-01T00:00:00Z")
                holding.set()
                assert release.wait(60)

        def second_writer() -> None:
            with second_ledger.write() as tx:
                drawn["second"] = tx.log("core_update", core("b"), "2025-01-01T00:00:01Z")

        seen: list[int] = []
        with ThreadPoolExecutor(2) as pool:
            first_done = pool.submit(first_writer)
            assert holding.wait(60)
            second_done = pool.submit(second_writer)
            wait_until_blocked(url, "SELECT seq FROM ledger_head")  # the second waits for the first's commit
            mark = follow(after, seen, 0)
            assert seen == [] and "second" not in drawn
            release.set()
            first_done.result()
            second_done.result()
        mark = follow(after, seen, mark)
        assert drawn == {"first": 1, "second": 2}
        assert seen == [1, 2] and mark == 2
    finally:
        for ledger in (first_ledger, second_ledger, reader):
            ledger.close()


def test_migrations_run_once_when_processes_start_together(url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        ledgers = list(pool.map(lambda _: PostgresLedger(url).open(), range(4)))
    try:
        assert len({ledger.ledger_id for ledger in ledgers}) == 1
        with ledgers[0].read() as tx:
            names = [row[0] for row in tx.sql("SELECT name FROM migrations ORDER BY name")]
        assert names == [name for name, _ in POSTGRES_MIGRATIONS]
    finally:
        for ledger in ledgers:
            ledger.close()


def test_a_newer_schema_and_another_programs_database_are_refused(url: str, postgres_cluster: postgres.Cluster) -> None:
    PostgresLedger(url).open().close()
    with _connect(url) as conn:
        conn.execute("INSERT INTO migrations (name, applied_at) VALUES ('9999_future', 'x')")
    with pytest.raises(RuntimeError, match="newer mcp-memalpha"):
        PostgresLedger(url).open()
    with postgres_cluster.database() as other, _connect(other) as conn:
        conn.execute("CREATE TABLE items (id TEXT)")
        with pytest.raises(StorageError, match="not an mcp-memalpha ledger"):
            PostgresLedger(other).open()


def test_an_unreachable_server_is_one_clear_error() -> None:
    port = postgres._free_port()
    with pytest.raises(StorageError, match=r"cannot connect to the PostgreSQL ledger.*127\.0\.0\.1") as refused:
        PostgresLedger(f"postgresql://postgres:secret@127.0.0.1:{port}/none").open()
    assert "secret" not in str(refused.value)


def test_the_namespace_cap_holds_across_processes(url: str, tmp_path: Path) -> None:
    """Two servers inserting at once into one namespace: the count and the insert are in one write
    transaction, so the cap is never passed."""
    ctx = CallContext()
    settings = [Settings(data_dir=tmp_path / name, database_url=url, max_items_per_namespace=10) for name in ("a", "b")]
    with Memory(settings[0]) as one, Memory(settings[1]) as two:

        def fill(memory: Memory) -> int:
            stored = 0
            for i in range(12):
                try:
                    memory.insert(ctx, "semantic", f"fact {i} from {id(memory)}")
                    stored += 1
                except NamespaceFull:
                    pass
            return stored

        with ThreadPoolExecutor(2) as pool:
            stored = sum(pool.map(fill, (one, two)))
        assert stored == 10
        assert len(list(one.iter_items(None))) == 10


def test_migrate_copies_a_sqlite_memory_losslessly(url: str, tmp_path: Path) -> None:
    """`mcp-memalpha migrate --from DATA_DIR --to URL`: items, versions, history, core, jobs and the
    ledger's identity arrive as they were; new writes are numbered after the copied log."""
    from click.testing import CliRunner

    from mcp_memalpha.cli import main
    from mcp_memalpha.jobs import JobQueue

    ctx = CallContext()
    data = tmp_path / "data"
    with Memory(Settings(data_dir=data)) as source:
        kept = source.insert(ctx, "episodic", "Ana opened a bakery.", "2024-03-01")
        source.update(ctx, "episodic", kept.id, "Ana opened a bakery in Porto.")
        gone = source.insert(ctx, "semantic", "Ana dislikes olives.")
        source.delete(ctx, "semantic", gone.id)
        source.set_core(ctx, "Ana is a baker.")
        job, _ = JobQueue(source.ledger, source.settings).enqueue(ctx, "User: I bake bread.")
        source.sync_index()
        with source.ledger.read() as tx:
            head, ops = tx.head(), tx.count_ops()
        before = (list(source.iter_items(None, include_deleted=True)), source.history(ctx, kept.id), source.core(ctx))
        ledger_id = source.ledger.ledger_id

    done = CliRunner().invoke(main, ["migrate", "--from", str(data), "--to", url])
    assert done.exit_code == 0, done.output
    assert "copied 2 items, 1 core, 5 ops, 1 jobs" in done.output
    again = CliRunner().invoke(main, ["migrate", "--from", str(data), "--to", url])
    assert again.exit_code != 0 and "not empty" in again.output

    with Memory(Settings(data_dir=data, database_url=url)) as target:
        assert target.ledger.ledger_id == ledger_id
        after = (list(target.iter_items(None, include_deleted=True)), target.history(ctx, kept.id), target.core(ctx))
        assert after == before
        with target.ledger.read() as tx:
            assert (tx.head(), tx.count_ops()) == (head, ops)
        status, _ = JobQueue(target.ledger, target.settings).status(ctx, job.id)
        assert status.state == "queued" and status.chunk == "User: I bake bread."
        assert not target.index.is_behind(target.ledger)  # the index built from memory.db stays valid
        new = target.insert(ctx, "semantic", "Ana's bakery opens at seven.")
        assert target.history(ctx, new.id)[0].seq == head + 1
        second, _ = JobQueue(target.ledger, target.settings).enqueue(ctx, "User: more bread.")
        assert second.id != job.id
        assert target.search(ctx, "bakery Porto", method="bm25").hits[0].item.id == kept.id


def test_watch_wakes_on_another_process_write_and_outlives_a_dropped_connection(url: str) -> None:
    """`PostgresLedger.watch`: a write through another ledger (another process's pool) wakes the
    watcher; when its LISTEN connection is killed, it reconnects and wakes once (writes made
    meanwhile sent notifications nobody heard), then hears the next write."""
    watching, writer = PostgresLedger(url).open(), PostgresLedger(url).open()
    woken = threading.Semaphore(0)
    stop = watching.watch(woken.release)
    try:

        def write(namespace: str) -> None:
            with writer.write() as tx:
                tx.log("core_update", CoreRow(namespace, "x", 1, "2025-01-01T00:00:00Z", "client", None), "t")

        postgres.listener(url, "memalpha_log")
        write("a")
        assert woken.acquire(timeout=60)
        with _connect(url) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (postgres.listener(url, "memalpha_log"),))
        assert woken.acquire(timeout=60)  # reconnected: the wake for what it may have missed
        postgres.listener(url, "memalpha_log")
        write("b")
        assert woken.acquire(timeout=60)
    finally:
        stop()
        watching.close()
        writer.close()
