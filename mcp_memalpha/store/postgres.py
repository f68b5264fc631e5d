"""The PostgreSQL ledger: one database shared by every server process on every host.

Needs the `postgres` extra (psycopg 3 and psycopg_pool), imported only when a database URL is
set. Connections come from a pool (the tools run on worker threads, each transaction takes one
for its length). Commit order of the log: every write transaction first locks the one row of
`ledger_head` (SELECT ... FOR UPDATE), holds it until it commits, and draws its operations'
sequence numbers from it, so writers are serialized as SQLite's write lock serializes them, and a
number never becomes visible after a higher one. Reads run in REPEATABLE READ (one snapshot);
writes in READ COMMITTED, whose every statement after the lock sees every earlier commit.

A write that logged NOTIFYs `memalpha_log` at commit; `watch` LISTENs on it, so each server's
index follows the other servers' writes without polling. A write that made a memorize job
runnable NOTIFYs `memalpha_jobs`, which `watch_jobs` LISTENs on: a worker on another host starts
it at once (the workers still poll, for leases that run out).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from mcp_memalpha.errors import StorageError
from mcp_memalpha.store import migrations
from mcp_memalpha.store.ledger import POSTGRES, Ledger, Tx

POOL_MAX = 16  # connections per process: the tools' worker threads, the index sync, the curator
CONNECT_TIMEOUT_S = 10.0
NOTIFY_CHANNEL = "memalpha_log"  # NOTIFY'd with the newest sequence number after a write that logged
JOBS_CHANNEL = "memalpha_jobs"  # NOTIFY'd after a write that made a memorize job runnable
WATCH_STEP_S = 0.5  # how often the LISTEN loop looks up from its connection (to see a stop)
WATCH_RETRY_MAX_S = 30.0  # the longest pause before reopening a lost LISTEN connection

log = logging.getLogger(__name__)


def _drivers() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise StorageError(
            "storage: a postgresql:// database URL needs the PostgreSQL driver, which is not installed: "
            "pip install 'mcp-memalpha[postgres]'"
        ) from exc
    return psycopg, psycopg_pool


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "(an unreadable database URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class PostgresLedger(Ledger):
    backend = "postgres"

    def __init__(self, url: str, pool_size: int = POOL_MAX) -> None:
        super().__init__()
        self.url = url
        self.pool_size = pool_size
        self._pool: Any = None
        self._psycopg: Any = None

    def _storage_error(self, exc: Exception) -> StorageError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        psycopg = self._psycopg
        if psycopg is not None and isinstance(exc, psycopg.OperationalError):
            reason = f"the PostgreSQL server could not be reached or dropped the connection ({text}); try again"
        else:
            reason = f"the PostgreSQL ledger failed ({text})"
        return StorageError(f"storage: {reason}; nothing was written (database: {safe_url(self.url)})")

    def open(self) -> PostgresLedger:
        psycopg, psycopg_pool = _drivers()
        self._psycopg = psycopg
        pool = psycopg_pool.ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            open=False,
            timeout=CONNECT_TIMEOUT_S * 3,
            name="memalpha-ledger",
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            with pool.connection() as conn:
                migrations.migrate_postgres(conn)
        except psycopg_pool.PoolTimeout as exc:
            pool.close()
            raise StorageError(
                f"storage: cannot connect to the PostgreSQL ledger within {CONNECT_TIMEOUT_S:.0f} s "
                f"(database: {safe_url(self.url)}); check the URL, the server and its pg_hba.conf"
            ) from exc
        except psycopg.Error as exc:
            pool.close()
            raise self._storage_error(exc) from exc
        except RuntimeError as exc:
            pool.close()
            if "not an mcp-memalpha ledger" in str(exc):
                raise StorageError(f"storage: {exc} (database: {safe_url(self.url)})") from None
            raise
        self._pool = pool
        with self.read() as tx:
            self.ledger_id = tx.ledger_id()
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        return self._watch(NOTIFY_CHANNEL, wake)

    def watch_jobs(self, wake: Callable[[], None]) -> Callable[[], None]:
        return self._watch(JOBS_CHANNEL, wake)

    def _watch(self, channel: str, wake: Callable[[], None]) -> Callable[[], None]:
        watcher = Watcher(self.url, channel, wake, self._psycopg)
        watcher.start()
        return watcher.stop

    def vacuum(self) -> None:
        """VACUUM the tables a compaction shrinks (outside a transaction, as PostgreSQL requires)."""
        try:
            with self.pool.connection() as conn:
                conn.execute("VACUUM ops, jobs")
        except self._psycopg.Error as exc:
            raise self._storage_error(exc) from exc

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the ledger is not open")
        return self._pool

    @contextmanager
    def _transaction(self, write: bool, serialize: bool = True) -> Iterator[Tx]:
        psycopg = self._psycopg
        try:
            with self.pool.connection() as conn:
                if write:
                    conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    if serialize:
                        conn.execute("SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE")  # the writers' lock
                else:
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    tx = Tx(conn, POSTGRES, serialized=write and serialize)
                    yield tx
                    if tx.logged:  # wakes the replicas' index followers, at commit
                        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(max(tx.logged))))
                    if tx.queued:  # wakes the curation workers, at commit
                        conn.execute("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))
                    conn.execute("COMMIT")
                except BaseException:
                    with suppress(psycopg.Error):  # a broken connection: the server rolls back itself
                        conn.execute("ROLLBACK")
                    raise
        except psycopg.Error as exc:
            raise self._storage_error(exc) from exc


class Watcher:
    """LISTENs on `channel` and calls `wake` on each notification, on a connection of its own
    (held for as long as the server runs, so not one of the pool's).

    A notification is only a hint (the index then reads the log "after N" itself, a worker claims
    from the queue), so one lost while the connection was down costs nothing but time: the
    connection is reopened (pausing 1 s, doubling to 30 s), and `wake` is called once it is, for
    what was written meanwhile.
    """

    def __init__(self, url: str, channel: str, wake: Callable[[], None], psycopg: Any) -> None:
        self.url = url
        self.channel = channel
        self.wake = wake
        self._psycopg = psycopg
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"memalpha-watch-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen(missed=failures > 0)
                return
            except self._psycopg.Error as exc:
                failures += 1
                pause = min(WATCH_RETRY_MAX_S, 2.0 ** (failures - 1))
                log.warning(
                    "LISTEN %s on %s failed (%s); retrying in %.0f s (meanwhile only polling follows it)",
                    self.channel,
                    safe_url(self.url),
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    pause,
                )
                self._stop.wait(pause)

    def _listen(self, missed: bool) -> None:
        """Listen until stopped; raises the driver's error when the connection fails."""
        with self._psycopg.connect(self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S)) as conn:
            conn.execute(f"LISTEN {self.channel}")
            if missed:
                self.wake()
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=WATCH_STEP_S):
                    self.wake()
