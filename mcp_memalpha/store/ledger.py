"""The ledger: items, core paragraphs, memorize jobs and the append-only operation log.

It is the source of truth. `Ledger` is one interface over two backends: SQLite in the data
directory (`store.sqlite`, the default) and PostgreSQL (`store.postgres`, shared by many processes
on many hosts). Every statement is written once, here in `Tx`, in the SQL both engines speak; a
`Dialect` carries the few spellings that differ. Every tool call is one transaction: `write()`
serializes writers (SQLite's write lock; on PostgreSQL a row lock on the log's head row), so a
call is all-or-nothing, and sequence numbers of the log become visible in the order they were
drawn: the search index follows the log "after N" and must never find N+1 before N.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from typing import Any, Protocol

from mcp_memalpha.errors import StorageError

_CHUNK = 900  # stay well under SQLite's bound-parameter limit


class IdTaken(Exception):
    """An insert found its id taken (ids are drawn at random): the caller draws another."""


@dataclass(frozen=True)
class ItemRow:
    id: str
    namespace: str
    memory_type: str
    content: str
    event_time: str | None
    event_ts: float | None
    created_at: str
    updated_at: str
    version: int
    source: str
    job_id: str | None
    deleted_at: str | None

    @property
    def alive(self) -> bool:
        return self.deleted_at is None


@dataclass(frozen=True)
class CoreRow:
    namespace: str
    content: str
    version: int
    updated_at: str | None
    source: str | None
    job_id: str | None


@dataclass(frozen=True)
class OpRow:
    seq: int
    at: str
    namespace: str
    op: str
    memory_type: str
    item_id: str | None
    version: int
    content: str | None
    event_time: str | None
    source: str
    job_id: str | None


@dataclass(frozen=True)
class JobRow:
    """One memorize job as stored (`jobs.Job` reads it); `result` is JSON text."""

    id: str
    namespace: str
    chunk: str
    timestamp: str | None
    state: str
    attempts: int
    base_seq: int
    lease_owner: str | None
    lease_until: float | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: str | None
    error: str | None


_ITEM_COLUMNS = ", ".join(f.name for f in fields(ItemRow))
_OP_COLUMNS = ", ".join(f.name for f in fields(OpRow))
_JOB_COLUMNS = ", ".join(f.name for f in fields(JobRow))
_JOB_FIELDS = {f.name for f in fields(JobRow)} - {"id"}


OP_DIGEST_COLUMNS = "at, namespace, op, memory_type, item_id, version, content, event_time, source, job_id"


def op_digest(values: Sequence[object]) -> str:
    """The checksum of one logged operation: SHA-256 of its OP_DIGEST_COLUMNS values, in order."""
    return hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL; everything else in `Tx` is written once."""

    name: str
    placeholder: str  # '?' (sqlite3) or '%s' (psycopg); statements here are written with '?'
    created_ts: str  # an expression: created_at (ISO-8601 text) as Unix seconds, a float
    draws_seq: bool  # True: the log's sequence numbers come from the head row (PostgreSQL)
    key_type: str  # a sequence number's column type ('INTEGER PRIMARY KEY' is SQLite's rowid)
    claim_lock: str  # locks the job rows a claim picks, passing over those another claim holds

    def sql(self, statement: str) -> str:
        if self.placeholder == "?":
            return statement
        if "%" in statement:  # psycopg reads '%' as a placeholder's start
            raise ValueError(f"a statement for {self.name} must not contain '%': {statement}")
        return statement.replace("?", self.placeholder)


SQLITE = Dialect(
    "SQLite",
    "?",
    "(julianday(created_at) - 2440587.5) * 86400.0",
    draws_seq=False,
    key_type="INTEGER",
    claim_lock="",  # every write holds the database's write lock
)
POSTGRES = Dialect(
    "PostgreSQL",
    "%s",
    "EXTRACT(EPOCH FROM created_at::timestamptz)::double precision",
    draws_seq=True,
    key_type="BIGINT",
    claim_lock=" FOR UPDATE OF jobs SKIP LOCKED",
)


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What `Tx` needs of a DB-API connection (sqlite3's and psycopg's both have it)."""

    def execute(self, statement: Any, params: Any = ..., /) -> Any: ...


def _time_key(item: ItemRow, key: float | None, engine: str) -> float:
    """An item's listing key; a creation time the engine cannot read (written behind the tools'
    backs, or by an import before imports checked it) is an error naming the memory, not a crash."""
    if key is None:
        raise StorageError(
            f"storage: memory '{item.id}' (namespace '{item.namespace}') has created_at {item.created_at!r}, "
            f"which {engine} cannot read as a time, so it cannot be listed in order. Export the memory, write "
            "that created_at as ISO-8601 (e.g. 2023-05-08T13:56:00Z) and import it with --on-conflict replace"
        )
    return float(key)


class Tx:
    """The statements of one transaction. Only a ledger creates it."""

    def __init__(self, conn: Connection, dialect: Dialect, serialized: bool = True) -> None:
        self._conn = conn
        self.dialect = dialect
        self.serialized = serialized  # False: `Ledger.write(serialize=False)`, which may not log
        self.logged: list[int] = []  # sequence numbers this transaction appended to the log
        self.queued = False  # whether it made a job runnable (queued, or handed back)

    def _run(self, statement: str, params: Sequence[object] = ()) -> Any:
        return self._conn.execute(self.dialect.sql(statement), tuple(params))

    def sql(self, statement: str, params: Sequence[object] = ()) -> Any:
        """Run one statement (written with '?' placeholders) in this transaction; for tests and
        one-off tools. The modules of the memory use the named statements below."""
        return self._run(statement, params)

    # items -------------------------------------------------------------------------------
    def item(self, item_id: str) -> ItemRow | None:
        row = self._run(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        return ItemRow(*row) if row else None

    def items(self, item_ids: Iterable[str]) -> dict[str, ItemRow]:
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, ItemRow] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self._run(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id IN ({marks})", chunk):
                found[row[0]] = ItemRow(*row)
        return found

    def insert_item(self, item: ItemRow) -> None:
        """Raises IdTaken if the id exists (the caller draws a new one). ON CONFLICT rather than a
        caught error: on PostgreSQL an error would abort the whole transaction."""
        marks = ",".join("?" * len(fields(ItemRow)))
        cursor = self._run(
            f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING", astuple(item)
        )
        if cursor.rowcount != 1:
            raise IdTaken(item.id)

    def save_item(self, item: ItemRow) -> None:
        assignments = ", ".join(f"{f.name} = ?" for f in fields(ItemRow)[1:])
        self._run(f"UPDATE items SET {assignments} WHERE id = ?", (*astuple(item)[1:], item.id))

    def list_items(
        self,
        namespace: str,
        memory_type: str,
        after: tuple[float, str, str] | None,
        limit: int,
        newest_first: bool,
        deleted: bool = False,
    ) -> list[tuple[ItemRow, float]]:
        """Live (or deleted) items in (time, created_at, id) order with their time key; time is the
        event time, else the creation time. The key goes into paging cursors exactly as computed
        here, so pages never overlap or skip."""
        sql = (
            f"SELECT * FROM (SELECT {_ITEM_COLUMNS}, COALESCE(event_ts, {self.dialect.created_ts}) AS k "
            f"FROM items WHERE namespace = ? AND memory_type = ? AND deleted_at IS {'NOT ' if deleted else ''}NULL"
            ") AS listed"
        )
        params: list[object] = [namespace, memory_type]
        beyond, direction = ("<", "DESC") if newest_first else (">", "ASC")
        if after is not None:
            sql += f" WHERE (k, created_at, id) {beyond} (?, ?, ?)"
            params += list(after)
        sql += f" ORDER BY k {direction}, created_at {direction}, id {direction} LIMIT ?"
        params.append(limit)
        rows = [(ItemRow(*row[:-1]), row[-1]) for row in self._run(sql, params)]
        return [(item, _time_key(item, key, self.dialect.name)) for item, key in rows]

    def count_items(self, namespace: str, memory_type: str, deleted: bool = False) -> int:
        row = self._run(
            "SELECT COUNT(*) FROM items WHERE namespace = ? AND memory_type = ? "
            f"AND deleted_at IS {'NOT ' if deleted else ''}NULL",
            (namespace, memory_type),
        ).fetchone()
        return int(row[0])

    def count_live(self, namespace: str) -> int:
        """Live episodic and semantic items of a namespace."""
        row = self._run(
            "SELECT COUNT(*) FROM items WHERE namespace = ? AND deleted_at IS NULL", (namespace,)
        ).fetchone()
        return int(row[0])

    def all_items(self, namespace: str | None, include_deleted: bool) -> Iterator[ItemRow]:
        sql = f"SELECT {_ITEM_COLUMNS} FROM items WHERE 1 = 1"
        params: list[object] = []
        if namespace is not None:
            sql += " AND namespace = ?"
            params.append(namespace)
        if not include_deleted:
            sql += " AND deleted_at IS NULL"
        for row in self._run(sql + " ORDER BY namespace, created_at, id", params):
            yield ItemRow(*row)

    # core --------------------------------------------------------------------------------
    def core(self, namespace: str) -> CoreRow:
        row = self._run(
            "SELECT namespace, content, version, updated_at, source, job_id FROM core WHERE namespace = ?",
            (namespace,),
        ).fetchone()
        return CoreRow(*row) if row else CoreRow(namespace, "", 0, None, None, None)

    def save_core(self, core: CoreRow) -> None:
        self._run(
            "INSERT INTO core (namespace, content, version, updated_at, source, job_id) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(namespace) DO UPDATE SET content = excluded.content, version = excluded.version, "
            "updated_at = excluded.updated_at, source = excluded.source, job_id = excluded.job_id",
            astuple(core),
        )

    def all_cores(self, namespace: str | None) -> list[CoreRow]:
        sql = "SELECT namespace, content, version, updated_at, source, job_id FROM core"
        rows = self._run(sql + (" WHERE namespace = ?" if namespace else ""), (namespace,) if namespace else ())
        return [CoreRow(*row) for row in rows]

    # operation log -----------------------------------------------------------------------
    def log(self, op: str, item: ItemRow | CoreRow, at: str, item_id: str | None = None) -> int:
        """Append the state `item` reached through `op`; returns its sequence number."""
        if not self.serialized:
            raise RuntimeError("a write transaction opened with serialize=False may not log an operation")
        deleted = isinstance(item, ItemRow) and item.deleted_at is not None
        values = (
            at,
            item.namespace,
            op,
            item.memory_type if isinstance(item, ItemRow) else "core",
            item.id if isinstance(item, ItemRow) else item_id,
            item.version,
            None if deleted else item.content,
            item.event_time if isinstance(item, ItemRow) else None,
            item.source or "client",
            item.job_id,
        )
        if self.dialect.draws_seq:
            # The head row is locked by this transaction since it began (`PostgresLedger.write`):
            # no other writer draws or commits a number until this one commits.
            (seq,) = self._run("UPDATE ledger_head SET seq = seq + 1 WHERE id = 1 RETURNING seq").fetchone()
            self._run(
                f"INSERT INTO ops (seq, {OP_DIGEST_COLUMNS}, digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (seq, *values, op_digest(values)),
            )
        else:
            cursor = self._run(
                f"INSERT INTO ops ({OP_DIGEST_COLUMNS}, digest) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (*values, op_digest(values)),
            )
            seq = cursor.lastrowid
        self.logged.append(int(seq))
        return int(seq)

    def ledger_id(self) -> str:
        return str(self._run("SELECT value FROM meta WHERE key = 'ledger_id'").fetchone()[0])

    def head(self) -> int:
        """Sequence number of the newest operation (0 for an empty ledger)."""
        row = self._run("SELECT COALESCE(MAX(seq), 0) FROM ops").fetchone()
        return int(row[0])

    def count_ops(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM ops").fetchone()[0])

    def changed_item_ids(self, after: int, upto: int) -> list[str]:
        rows = self._run(
            "SELECT DISTINCT item_id FROM ops WHERE seq > ? AND seq <= ? AND item_id IS NOT NULL "
            "AND memory_type != 'core'",
            (after, upto),
        )
        return [row[0] for row in rows]

    def event_group(self, namespace: str, memory_type: str, event_ts: float) -> list[ItemRow]:
        """Live items recorded for one event (same namespace, type and event time), in write order."""
        rows = self._run(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE namespace = ? AND memory_type = ? AND event_ts = ? "
            "AND deleted_at IS NULL ORDER BY created_at, id",
            (namespace, memory_type, event_ts),
        )
        return [ItemRow(*row) for row in rows]

    def op_mark(self, seq: int) -> str:
        """A fingerprint of operation `seq` (its time and item), to tell a ledger from an older copy."""
        row = self._run("SELECT at, COALESCE(item_id, namespace) FROM ops WHERE seq = ?", (seq,)).fetchone()
        return f"{row[0]}|{row[1]}" if row else ""

    def states_before(self, item_ids: list[str], seq: int) -> dict[str, OpRow]:
        """For each id, its last operation at or before `seq` (where it stood then)."""
        found: dict[str, OpRow] = {}
        for start in range(0, len(item_ids), _CHUNK):
            chunk = item_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._run(
                f"SELECT {_OP_COLUMNS} FROM ops o WHERE item_id IN ({marks}) AND seq = "
                "(SELECT MAX(seq) FROM ops WHERE item_id = o.item_id AND seq <= ?)",
                (*chunk, seq),
            )
            found.update((row[5], OpRow(*row)) for row in rows)
        return found

    def imported_item_ids(self, after: int, upto: int) -> set[str]:
        rows = self._run(
            "SELECT DISTINCT item_id FROM ops WHERE seq > ? AND seq <= ? AND op = 'import' AND item_id IS NOT NULL",
            (after, upto),
        )
        return {row[0] for row in rows}

    def history(self, item_id: str) -> list[OpRow]:
        rows = self._run(f"SELECT {_OP_COLUMNS} FROM ops WHERE item_id = ? ORDER BY seq", (item_id,))
        return [OpRow(*row) for row in rows]

    def core_history(self, namespace: str) -> list[OpRow]:
        """Every logged version of a namespace's core paragraph, oldest first."""
        rows = self._run(
            f"SELECT {_OP_COLUMNS} FROM ops WHERE item_id IS NULL AND memory_type = 'core' AND namespace = ? "
            "ORDER BY seq",
            (namespace,),
        )
        return [OpRow(*row) for row in rows]

    def job_ops(self, job_id: str, after: int = 0) -> list[OpRow]:
        """The operations tagged with this job after sequence number `after`, oldest first."""
        rows = self._run(f"SELECT {_OP_COLUMNS} FROM ops WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, after))
        return [OpRow(*row) for row in rows]

    def trim_log(self, versions: int, index_applied: int | None, also_keep: Iterable[int]) -> int:
        """Delete operations except each memory's (and core's) newest `versions`, the ones the index
        still needs (`compaction`) and `also_keep`; returns how many were deleted."""
        entity = "COALESCE(item_id, 'core:' || namespace)"
        self._run(f"CREATE TEMP TABLE IF NOT EXISTS compaction_keep (seq {self.dialect.key_type} PRIMARY KEY)")
        self._run("DELETE FROM compaction_keep")
        keep, ignore = "INSERT INTO compaction_keep (seq) ", " ON CONFLICT DO NOTHING"
        self._run(
            keep + f"SELECT seq FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY {entity} ORDER BY seq DESC) AS age "
            "FROM ops) AS aged WHERE age <= ?" + ignore,
            (versions,),
        )
        if index_applied is not None:
            self._run(keep + "SELECT seq FROM ops WHERE seq >= ?" + ignore, (index_applied,))
            self._run(
                keep + "SELECT MAX(seq) FROM ops WHERE seq <= ? AND item_id IN "
                "(SELECT item_id FROM ops WHERE seq > ? AND item_id IS NOT NULL) GROUP BY item_id" + ignore,
                (index_applied, index_applied),
            )
        for seq in also_keep:
            self._run(keep + "VALUES (?)" + ignore, (seq,))
        removed = self._run("DELETE FROM ops WHERE seq NOT IN (SELECT seq FROM compaction_keep)").rowcount
        self._run("DELETE FROM compaction_keep")
        return int(removed)

    # whole tables (`store.copy`) -----------------------------------------------------------
    def load_rows(self, table: str, columns: str, rows: Sequence[Sequence[object]]) -> None:
        """Insert rows as they are, sequence numbers included (a ledger copied into an empty one)."""
        marks = ",".join("?" * len(columns.split(",")))
        keep = " OVERRIDING SYSTEM VALUE" if self.dialect.draws_seq and table == "jobs" else ""
        for row in rows:
            self._run(f"INSERT INTO {table} ({columns}){keep} VALUES ({marks})", row)

    def restart_sequences(self) -> None:
        """After `load_rows`: new operations and jobs are numbered after the copied ones."""
        if self.dialect.draws_seq:
            self._run("UPDATE ledger_head SET seq = (SELECT COALESCE(MAX(seq), 0) FROM ops) WHERE id = 1")
            after = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs)"
            self._run(f"SELECT setval(pg_get_serial_sequence('jobs', 'seq'), {after}, false)")
        # SQLite's AUTOINCREMENT continues after the largest key inserted by itself

    # memorize jobs -----------------------------------------------------------------------
    def insert_job(self, job_id: str, namespace: str, chunk: str, timestamp: str | None, created_at: str) -> None:
        """Queue a new job; raises IdTaken if the id exists."""
        cursor = self._run(
            "INSERT INTO jobs (id, namespace, chunk, timestamp, state, created_at) VALUES (?,?,?,?,'queued',?) "
            "ON CONFLICT (id) DO NOTHING",
            (job_id, namespace, chunk, timestamp, created_at),
        )
        if cursor.rowcount != 1:
            raise IdTaken(job_id)
        self.queued = True

    def job(self, job_id: str, namespace: str | None = None) -> JobRow | None:
        """The job with this id (only in `namespace`, when given)."""
        sql, params = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", [job_id]
        if namespace is not None:
            sql, params = sql + " AND namespace = ?", [job_id, namespace]
        row = self._run(sql, params).fetchone()
        return JobRow(*row) if row else None

    def update_job(
        self, job_id: str, changes: dict[str, object], owner: str | None = None, add_attempts: int = 0
    ) -> bool:
        """Set `changes` (column: value) on a job, adding `add_attempts` to its attempts; with
        `owner`, only while that owner holds it running. Returns whether a job was changed."""
        unknown = set(changes) - _JOB_FIELDS
        if unknown:
            raise ValueError(f"jobs have no columns {sorted(unknown)}")
        assignments = [f"{name} = ?" for name in changes]
        if add_attempts:
            assignments.append(f"attempts = attempts + {int(add_attempts)}")
        sql = f"UPDATE jobs SET {', '.join(assignments)} WHERE id = ?"
        params = [*changes.values(), job_id]
        if owner is not None:
            sql += " AND lease_owner = ? AND state = 'running'"
            params.append(owner)
        changed = bool(self._run(sql, params).rowcount == 1)
        self.queued |= changed and changes.get("state") == "queued"
        return changed

    def holds_lease(self, job_id: str, owner: str) -> bool:
        row = self._run(
            "SELECT 1 FROM jobs WHERE id = ? AND lease_owner = ? AND state = 'running'", (job_id, owner)
        ).fetchone()
        return row is not None

    def next_runnable_job(self, now: float, lock: bool = False) -> JobRow | None:
        """The runnable job (queued, or running with a lease expired before `now`) of the namespace
        whose last claim is oldest (never claimed: first), its oldest first. With `lock` (in a
        write), on PostgreSQL its row is locked until the transaction ends, and a row another
        transaction holds is passed over (SKIP LOCKED): claimers on several hosts take different
        jobs, none waiting for another."""
        row = self._run(
            "WITH last AS (SELECT namespace, MAX(started_at) AS at FROM jobs GROUP BY namespace) "
            f"SELECT {_JOB_COLUMNS} FROM jobs JOIN last USING (namespace) "
            "WHERE (state = 'queued' OR (state = 'running' AND lease_until < ?)) "
            f"ORDER BY last.at NULLS FIRST, seq LIMIT 1{self.dialect.claim_lock if lock else ''}",
            (now,),
        ).fetchone()
        return JobRow(*row) if row else None

    def count_unfinished_jobs(self, namespace: str) -> int:
        row = self._run(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') AND namespace = ?", (namespace,)
        ).fetchone()
        return int(row[0])

    def job_place(self, job_id: str) -> tuple[str, int, str]:
        """A job's namespace, queue order (seq) and state."""
        namespace, seq, state = self._run("SELECT namespace, seq, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(namespace), int(seq), str(state)

    def count_running_jobs(self, other_than: str) -> int:
        row = self._run("SELECT COUNT(*) FROM jobs WHERE state = 'running' AND id != ?", (other_than,)).fetchone()
        return int(row[0])

    def count_queued_jobs(self, namespace: str, upto_seq: int) -> int:
        row = self._run(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND namespace = ? AND seq <= ?", (namespace, upto_seq)
        ).fetchone()
        return int(row[0])

    def queued_rotation(self) -> list[tuple[str, int]]:
        """Namespaces with queued jobs and how many, in the order their turns come."""
        rows = self._run(
            "SELECT namespace, queued FROM (SELECT q.namespace, COUNT(*) AS queued, MIN(q.seq) AS first, "
            "(SELECT MAX(started_at) FROM jobs AS s WHERE s.namespace = q.namespace) AS at "
            "FROM jobs AS q WHERE q.state = 'queued' GROUP BY q.namespace) AS turns "
            "ORDER BY at IS NOT NULL, at, first"
        ).fetchall()
        return [(str(namespace), int(count)) for namespace, count in rows]

    def delete_finished_jobs(self, finished_before: str) -> int:
        cursor = self._run(
            "DELETE FROM jobs WHERE state IN ('done', 'failed', 'undone') AND finished_at < ?", (finished_before,)
        )
        return int(cursor.rowcount)

    def undoable_jobs(self) -> list[tuple[str, int]]:
        """(id, base_seq) of every job that can still be reverted (undo, or a rerun's revert)."""
        rows = self._run("SELECT id, base_seq FROM jobs WHERE state IN ('queued', 'running', 'done', 'failed')")
        return [(str(job_id), int(base_seq)) for job_id, base_seq in rows.fetchall()]


class Ledger(ABC):
    """The interface both backends implement. Transactions are short (milliseconds); open with
    `open()`, then `write()` and `read()` from any thread (no nesting on one thread)."""

    ledger_id: str
    backend: str  # 'sqlite' or 'postgres'

    def __init__(self) -> None:
        self._fence = threading.local()
        self._open_tx = threading.local()
        self.ledger_id = ""

    @abstractmethod
    def open(self) -> Ledger: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def vacuum(self) -> None:
        """Give the space freed by a compaction back."""

    def watch(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Call `wake` (from a thread of the ledger's) whenever any process commits a write that
        logged, until the returned function is called to stop. None where the backend cannot
        tell: SQLite has no notifications, so there only `index_poll_seconds` follows other
        processes' writes."""
        return None

    def watch_jobs(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Call `wake` whenever any process makes a memorize job runnable (queues one, or hands one
        back), until the returned function is called; None where the backend cannot tell (SQLite:
        workers poll the queue)."""
        return None

    @abstractmethod
    def _transaction(self, write: bool, serialize: bool = True) -> Any:
        """A context manager yielding a Tx, committed on success and rolled back on any error;
        engine errors raised inside it become StorageError. `serialize`: see `write`."""

    @contextmanager
    def fenced(self, check: Callable[[Tx], None]) -> Iterator[None]:
        """Run `check` at the start of every write transaction this thread opens inside the block.

        It runs under the write lock, so what it verifies (a job still holds its lease) stays true
        until the write commits; if it raises, the write is rolled back and the error propagates.
        """
        self._fence.check = check
        try:
            yield
        finally:
            self._fence.check = None

    @contextmanager
    def _one_per_thread(self) -> Iterator[None]:
        if getattr(self._open_tx, "open", False):
            raise RuntimeError("a ledger transaction is already open on this thread; nesting is not allowed")
        self._open_tx.open = True
        try:
            yield
        finally:
            self._open_tx.open = False

    @contextmanager
    def write(self, *, serialize: bool = True) -> Iterator[Tx]:
        """A write transaction: all of it commits, or none of it does.

        `serialize=False` is for a transaction that logs nothing (`Tx.log` refuses) and changes
        only rows it has locked itself (a job claim: `Tx.next_runnable_job`): on PostgreSQL it does
        not take the head row, so it runs beside other writers; on SQLite nothing changes (every
        write holds the database's write lock)."""
        with self._one_per_thread(), self._transaction(write=True, serialize=serialize) as tx:
            check = getattr(self._fence, "check", None)
            if check is not None:
                check(tx)
            yield tx

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one consistent snapshot for everything read inside it."""
        with self._one_per_thread(), self._transaction(write=False) as tx:
            yield tx
