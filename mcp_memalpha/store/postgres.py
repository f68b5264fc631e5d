"""The PostgreSQL ledger: one database shared by every server process on every host.

Needs the `postgres` extra (psycopg 3 and psycopg_pool), imported only when a database URL is
set. Connections come from a pool (the tools run on worker threads, each transaction takes one
for its length). Commit order of the log: every write transaction first locks the one row of
`ledger_head` (SELECT ... FOR UPDATE), holds it until it commits, and draws its operations'
sequence numbers from it, so writers are serialized as SQLite's write lock serializes them, and a
number never becomes visible after a higher one. Reads run in REPEATABLE READ (one snapshot);
writes in READ COMMITTED, whose every statement after the lock sees every earlier commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from mcp_memalpha.errors import StorageError
from mcp_memalpha.store import migrations
from mcp_memalpha.store.ledger import POSTGRES, Ledger, Tx

POOL_MAX = 16  # connections per process: the tools' worker threads, the index sync, the curator
CONNECT_TIMEOUT_S = 10.0
NOTIFY_CHANNEL = "memalpha_log"  # NOTIFY'd with the newest sequence number after a write that logged


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
    def _transaction(self, write: bool) -> Iterator[Tx]:
        psycopg = self._psycopg
        try:
            with self.pool.connection() as conn:
                if write:
                    conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    conn.execute("SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE")  # the writers' lock
                else:
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    tx = Tx(conn, POSTGRES)
                    yield tx
                    if tx.logged:  # wakes the replicas' index followers, at commit
                        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(max(tx.logged))))
                    conn.execute("COMMIT")
                except BaseException:
                    with suppress(psycopg.Error):  # a broken connection: the server rolls back itself
                        conn.execute("ROLLBACK")
                    raise
        except psycopg.Error as exc:
            raise self._storage_error(exc) from exc
