"""Named schema migrations, applied in order and recorded in the `migrations` table.

Never edit a migration that has shipped; add a new one. Each runs inside the same
`BEGIN IMMEDIATE` transaction as its record, so several processes starting at once on one
data directory apply it exactly once.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def applied(conn: sqlite3.Connection) -> list[str]:
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    return [row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY name")]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied. `conn` must be in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = set(applied(conn))
        known = {name for name, _ in MIGRATIONS}
        unknown = done - known
        if unknown:
            raise RuntimeError(
                f"this data directory was written by a newer mcp-memalpha (migrations {sorted(unknown)}); "
                "upgrade mcp-memalpha to open it"
            )
        new = []
        for name, statements in MIGRATIONS:
            if name in done:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, _now()))
            new.append(name)
        conn.execute("COMMIT")
        return new
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise
