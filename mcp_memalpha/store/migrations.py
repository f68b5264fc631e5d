"""Named schema migrations, applied in order and recorded in the `migrations` table.

Each backend has its list: `MIGRATIONS` (SQLite) and `POSTGRES_MIGRATIONS`. Never edit a
migration that has shipped; add a new one (to both lists, in each one's dialect). Each runs inside
one transaction with its record, under a lock (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL a
transaction-scoped advisory lock), so several processes starting at once apply it exactly once.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_initial",
        [
            """CREATE TABLE items (
                id TEXT PRIMARY KEY,
                namespace TEXT NOT NULL,
                memory_type TEXT NOT NULL CHECK (memory_type IN ('semantic', 'episodic')),
                content TEXT NOT NULL,
                event_time TEXT,
                event_ts REAL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                source TEXT NOT NULL,
                job_id TEXT,
                deleted_at TEXT
            )""",
            """CREATE INDEX items_listing ON items
                (namespace, memory_type, deleted_at, event_ts, created_at, id)""",
            """CREATE TABLE core (
                namespace TEXT PRIMARY KEY,
                content TEXT NOT NULL,
                version INTEGER NOT NULL,
                updated_at TEXT NOT NULL,
                source TEXT NOT NULL,
                job_id TEXT
            )""",
            # Append-only: every change, with the full state it produced.
            """CREATE TABLE ops (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL,
                namespace TEXT NOT NULL,
                op TEXT NOT NULL,
                memory_type TEXT NOT NULL,
                item_id TEXT,
                version INTEGER NOT NULL,
                content TEXT,
                event_time TEXT,
                source TEXT NOT NULL,
                job_id TEXT
            )""",
            "CREATE INDEX ops_item ON ops (item_id, seq)",
        ],
    ),
    (
        # A random identity for this ledger: the search index records which ledger it was built
        # from, so a restored or replaced memory.db makes it rebuild instead of trusting old rows.
        "0002_ledger_identity",
        [
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "INSERT INTO meta (key, value) VALUES ('ledger_id', lower(hex(randomblob(16))))",
        ],
    ),
    (
        # The durable queue of memorize jobs (mcp_memalpha/jobs.py). It lives in the ledger so a
        # job's state changes and the memory writes it reverts share one transaction.
        "0003_jobs",
        [
            # seq is the queue order (creation order; an explicit key so VACUUM cannot renumber it).
            # base_seq is the ledger head when the current attempt started: the job's writes to revert
            # are the operations tagged with its id after it (an earlier attempt's were reverted then).
            """CREATE TABLE jobs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                namespace TEXT NOT NULL,
                chunk TEXT NOT NULL,
                timestamp TEXT,
                state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'undone')),
                attempts INTEGER NOT NULL DEFAULT 0,
                base_seq INTEGER NOT NULL DEFAULT 0,
                lease_owner TEXT,
                lease_until REAL,
                created_at TEXT NOT NULL,
                started_at TEXT,
                finished_at TEXT,
                result TEXT,
                error TEXT
            )""",
            "CREATE INDEX jobs_by_state ON jobs (state, seq)",
            # Undo and crash recovery read every operation of one job.
            "CREATE INDEX ops_job ON ops (job_id, seq) WHERE job_id IS NOT NULL",
        ],
    ),
    (
        # A checksum of every operation as logged (store.ledger.op_digest): the doctor recomputes it,
        # so history changed behind the ledger's back (a flipped byte) is found, not only drift of
        # the newest operation. Operations logged before this migration have none.
        "0004_op_digests",
        ["ALTER TABLE ops ADD COLUMN digest TEXT"],
    ),
]


# PostgreSQL: the whole current schema in one migration (its first). The same tables and columns
# as SQLite's, but: ops.seq is drawn from the head row `ledger_head` (a plain identity column can
# commit out of order; see docs/architecture.md); versions are BIGINT (an import may carry up to
# 2**53 - 1); floats are double precision (PostgreSQL's REAL has 4 bytes); and the text columns
# that order rows compare bytes (COLLATE "C") as SQLite does, so listings and cursors agree.
POSTGRES_MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_initial",
        [
            """CREATE TABLE items (
                id TEXT COLLATE "C" PRIMARY KEY,
                namespace TEXT COLLATE "C" NOT NULL,
                memory_type TEXT NOT NULL CHECK (memory_type IN ('semantic', 'episodic')),
                content TEXT NOT NULL,
                event_time TEXT,
                event_ts DOUBLE PRECISION,
                created_at TEXT COLLATE "C" NOT NULL,
                updated_at TEXT NOT NULL,
                version BIGINT NOT NULL CHECK (version >= 1),
                source TEXT NOT NULL,
                job_id TEXT,
                deleted_at TEXT
            )""",
            """CREATE INDEX items_listing ON items
                (namespace, memory_type, deleted_at, event_ts, created_at, id)""",
            """CREATE TABLE core (
                namespace TEXT COLLATE "C" PRIMARY KEY,
                content TEXT NOT NULL,
                version BIGINT NOT NULL,
                updated_at TEXT NOT NULL,
                source TEXT NOT NULL,
                job_id TEXT
            )""",
            """CREATE TABLE ops (
                seq BIGINT PRIMARY KEY,
                at TEXT NOT NULL,
                namespace TEXT COLLATE "C" NOT NULL,
                op TEXT NOT NULL,
                memory_type TEXT NOT NULL,
                item_id TEXT COLLATE "C",
                version BIGINT NOT NULL,
                content TEXT,
                event_time TEXT,
                source TEXT NOT NULL,
                job_id TEXT,
                digest TEXT
            )""",
            "CREATE INDEX ops_item ON ops (item_id, seq)",
            "CREATE INDEX ops_job ON ops (job_id, seq) WHERE job_id IS NOT NULL",
            # The newest sequence number drawn. Every write transaction locks this one row first
            # (`PostgresLedger`), which serializes writers as SQLite's write lock does.
            "CREATE TABLE ledger_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL)",
            "INSERT INTO ledger_head (id, seq) VALUES (1, 0)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "INSERT INTO meta (key, value) VALUES ('ledger_id', md5(random()::text || clock_timestamp()::text))",
            """CREATE TABLE jobs (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT COLLATE "C" NOT NULL UNIQUE,
                namespace TEXT COLLATE "C" NOT NULL,
                chunk TEXT NOT NULL,
                timestamp TEXT,
                state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'undone')),
                attempts INTEGER NOT NULL DEFAULT 0,
                base_seq BIGINT NOT NULL DEFAULT 0,
                lease_owner TEXT,
                lease_until DOUBLE PRECISION,
                created_at TEXT NOT NULL,
                started_at TEXT COLLATE "C",
                finished_at TEXT,
                result TEXT,
                error TEXT
            )""",
            "CREATE INDEX jobs_by_state ON jobs (state, seq)",
        ],
    ),
]
# pg_advisory_xact_lock key of the migrations ('memalpha' in ASCII): one process migrates at a time.
POSTGRES_LOCK = 0x6D656D616C706861


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def applied(conn: sqlite3.Connection) -> list[str]:
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    return [row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY name")]


def _apply(conn: Any, done: set[str], plan: list[tuple[str, list[str]]], mark: str, where: str) -> list[str]:
    """Run the migrations of `plan` not in `done`, recording each (`mark` is the placeholder)."""
    unknown = done - {name for name, _ in plan}
    if unknown:
        raise RuntimeError(
            f"this {where} was written by a newer mcp-memalpha (migrations {sorted(unknown)}); "
            "upgrade mcp-memalpha to open it"
        )
    new = []
    for name, statements in plan:
        if name in done:
            continue
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"INSERT INTO migrations (name, applied_at) VALUES ({mark}, {mark})", (name, _now()))
        new.append(name)
    return new


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied. `conn` must be in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        new = _apply(conn, set(applied(conn)), MIGRATIONS, "?", "data directory")
        conn.execute("COMMIT")
        return new
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise


def migrate_postgres(conn: Any) -> list[str]:
    """Apply pending PostgreSQL migrations under the advisory lock; returns the names applied.

    `conn` is a psycopg connection in autocommit mode. A database that already holds an `items`
    table but no `migrations` table is another program's: refused, and left as it is."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (POSTGRES_LOCK,))
        ours, items = conn.execute("SELECT to_regclass('migrations'), to_regclass('items')").fetchone()
        if ours is None and items is not None:
            raise RuntimeError(
                "this PostgreSQL database (or schema) has an `items` table but no `migrations` table: it is not an "
                "mcp-memalpha ledger; it was left as it is. Point the database URL at an empty database or schema"
            )
        conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
        return _apply(conn, done, POSTGRES_MIGRATIONS, "%s", "database")
