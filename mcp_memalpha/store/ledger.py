"""The SQLite ledger: items, core paragraphs and the append-only operation log.

It is the source of truth. Every tool call is one transaction (`Ledger.write()` takes SQLite's
write lock with BEGIN IMMEDIATE), so a call is all-or-nothing and several processes on one
data directory serialize their writes instead of losing them. WAL mode lets readers proceed
while a writer works; `synchronous=FULL` makes an acknowledged write survive a power cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from mcp_memalpha.errors import StorageError
from mcp_memalpha.store import migrations

BUSY_TIMEOUT_S = 30.0
_CHUNK = 900  # stay well under SQLite's bound-parameter limit


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


_ITEM_COLUMNS = ", ".join(f.name for f in fields(ItemRow))
_OP_COLUMNS = ", ".join(f.name for f in fields(OpRow))


OP_DIGEST_COLUMNS = "at, namespace, op, memory_type, item_id, version, content, event_time, source, job_id"


def op_digest(values: Sequence[object]) -> str:
    """The checksum of one logged operation: SHA-256 of its OP_DIGEST_COLUMNS values, in order."""
    return hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()


def _storage_error(exc: sqlite3.Error, path: Path) -> StorageError:
    """A plain message for a database failure: what happened, that nothing was written, what to do.

    Matched on SQLite's message text, which is stable and also what an injected error carries."""
    text = str(exc)
    folder = path.parent
    if "locked" in text or "busy" in text:
        reason = f"another process held the memory database for over {BUSY_TIMEOUT_S:.0f} s; try again"
    elif "readonly" in text or "read-only" in text:
        reason = (
            f"the data directory is read-only; nothing was written. Make {folder} and the files in it writable "
            "by this user (SQLite writes its journal beside the database even to read it)"
        )
    elif "full" in text:
        reason = f"the disk is full; nothing was written. Free space on the disk holding {folder} and retry"
    elif "malformed" in text or "not a database" in text:
        reason = (
            f"the memory database is damaged ({text}); nothing was written. Run `mcp-memalpha doctor "
            f"--data-dir {folder}` and restore memory.db from a backup or an export"
        )
    elif "disk I/O" in text or "unable to open" in text:
        reason = (
            f"the disk could not be read or written ({text}); nothing was written. Check that {folder} exists, "
            "is readable and writable by this user, and that its disk is healthy"
        )
    else:
        reason = f"the memory database failed ({text}); nothing was written"
    return StorageError(f"storage: {reason} (database: {path})")


def _time_key(item: ItemRow, key: float | None) -> float:
    """An item's listing key; a creation time SQLite cannot read (written behind the tools' backs,
    or by an import before imports checked it) is an error naming the memory, not a crash."""
    if key is None:
        raise StorageError(
            f"storage: memory '{item.id}' (namespace '{item.namespace}') has created_at {item.created_at!r}, "
            "which SQLite cannot read as a time, so it cannot be listed in order. Export the memory, write "
            "that created_at as ISO-8601 (e.g. 2023-05-08T13:56:00Z) and import it with --on-conflict replace"
        )
    return float(key)


def _end(conn: sqlite3.Connection, statement: str) -> None:
    """COMMIT or ROLLBACK if a transaction is still open: SQLite rolls back by itself after some
    errors (disk full, I/O), and a ROLLBACK then would fail and hide the real error."""
    if conn.in_transaction:
        conn.execute(statement)


class Tx:
    """The statements of one transaction. Only the ledger creates it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.logged: list[int] = []  # sequence numbers this transaction appended to the log

    # items -------------------------------------------------------------------------------
    def item(self, item_id: str) -> ItemRow | None:
        row = self._conn.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        return ItemRow(*row) if row else None

    def items(self, item_ids: Iterable[str]) -> dict[str, ItemRow]:
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, ItemRow] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id IN ({marks})", chunk):
                found[row[0]] = ItemRow(*row)
        return found

    def insert_item(self, item: ItemRow) -> None:
        """Raises sqlite3.IntegrityError if the id exists (the caller draws a new one)."""
        marks = ",".join("?" * len(fields(ItemRow)))
        self._conn.execute(f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES ({marks})", astuple(item))

    def save_item(self, item: ItemRow) -> None:
        assignments = ", ".join(f"{f.name} = ?" for f in fields(ItemRow)[1:])
        self._conn.execute(f"UPDATE items SET {assignments} WHERE id = ?", (*astuple(item)[1:], item.id))

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
            f"SELECT {_ITEM_COLUMNS}, COALESCE(event_ts, (julianday(created_at) - 2440587.5) * 86400.0) AS k "
            f"FROM items WHERE namespace = ? AND memory_type = ? AND deleted_at IS {'NOT ' if deleted else ''}NULL"
        )
        params: list[object] = [namespace, memory_type]
        beyond, direction = ("<", "DESC") if newest_first else (">", "ASC")
        if after is not None:
            sql += f" AND (k, created_at, id) {beyond} (?, ?, ?)"
            params += list(after)
        sql += f" ORDER BY k {direction}, created_at {direction}, id {direction} LIMIT ?"
        params.append(limit)
        return [(ItemRow(*row[:-1]), _time_key(ItemRow(*row[:-1]), row[-1])) for row in self._conn.execute(sql, params)]

    def count_items(self, namespace: str, memory_type: str, deleted: bool = False) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM items WHERE namespace = ? AND memory_type = ? "
            f"AND deleted_at IS {'NOT ' if deleted else ''}NULL",
            (namespace, memory_type),
        ).fetchone()
        return int(row[0])

    def count_live(self, namespace: str) -> int:
        """Live episodic and semantic items of a namespace."""
        row = self._conn.execute(
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
        for row in self._conn.execute(sql + " ORDER BY namespace, created_at, id", params):
            yield ItemRow(*row)

    # core --------------------------------------------------------------------------------
    def core(self, namespace: str) -> CoreRow:
        row = self._conn.execute(
            "SELECT namespace, content, version, updated_at, source, job_id FROM core WHERE namespace = ?",
            (namespace,),
        ).fetchone()
        return CoreRow(*row) if row else CoreRow(namespace, "", 0, None, None, None)

    def save_core(self, core: CoreRow) -> None:
        self._conn.execute(
            "INSERT INTO core (namespace, content, version, updated_at, source, job_id) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(namespace) DO UPDATE SET content = excluded.content, version = excluded.version, "
            "updated_at = excluded.updated_at, source = excluded.source, job_id = excluded.job_id",
            astuple(core),
        )

    def all_cores(self, namespace: str | None) -> list[CoreRow]:
        sql = "SELECT namespace, content, version, updated_at, source, job_id FROM core"
        rows = self._conn.execute(
            sql + (" WHERE namespace = ?" if namespace else ""), (namespace,) if namespace else ()
        )
        return [CoreRow(*row) for row in rows]

    # operation log -----------------------------------------------------------------------
    def log(self, op: str, item: ItemRow | CoreRow, at: str, item_id: str | None = None) -> int:
        """Append the state `item` reached through `op`; returns its sequence number."""
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
        cursor = self._conn.execute(
            f"INSERT INTO ops ({OP_DIGEST_COLUMNS}, digest) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (*values, op_digest(values)),
        )
        seq = int(cursor.lastrowid or 0)
        self.logged.append(seq)
        return seq

    def ledger_id(self) -> str:
        return str(self._conn.execute("SELECT value FROM meta WHERE key = 'ledger_id'").fetchone()[0])

    def head(self) -> int:
        """Sequence number of the newest operation (0 for an empty ledger)."""
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ops").fetchone()
        return int(row[0])

    def changed_item_ids(self, after: int, upto: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT item_id FROM ops WHERE seq > ? AND seq <= ? AND item_id IS NOT NULL "
            "AND memory_type != 'core'",
            (after, upto),
        )
        return [row[0] for row in rows]

    def event_group(self, namespace: str, memory_type: str, event_ts: float) -> list[ItemRow]:
        """Live items recorded for one event (same namespace, type and event time), in write order."""
        rows = self._conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE namespace = ? AND memory_type = ? AND event_ts = ? "
            "AND deleted_at IS NULL ORDER BY created_at, id",
            (namespace, memory_type, event_ts),
        )
        return [ItemRow(*row) for row in rows]

    def op_mark(self, seq: int) -> str:
        """A fingerprint of operation `seq` (its time and item), to tell a ledger from an older copy."""
        row = self._conn.execute("SELECT at, COALESCE(item_id, namespace) FROM ops WHERE seq = ?", (seq,)).fetchone()
        return f"{row[0]}|{row[1]}" if row else ""

    def states_before(self, item_ids: list[str], seq: int) -> dict[str, OpRow]:
        """For each id, its last operation at or before `seq` (where it stood then)."""
        found: dict[str, OpRow] = {}
        for start in range(0, len(item_ids), _CHUNK):
            chunk = item_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT {_OP_COLUMNS} FROM ops o WHERE item_id IN ({marks}) AND seq = "
                "(SELECT MAX(seq) FROM ops WHERE item_id = o.item_id AND seq <= ?)",
                (*chunk, seq),
            )
            found.update((row[5], OpRow(*row)) for row in rows)
        return found

    def imported_item_ids(self, after: int, upto: int) -> set[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT item_id FROM ops WHERE seq > ? AND seq <= ? AND op = 'import' AND item_id IS NOT NULL",
            (after, upto),
        )
        return {row[0] for row in rows}

    def history(self, item_id: str) -> list[OpRow]:
        rows = self._conn.execute(f"SELECT {_OP_COLUMNS} FROM ops WHERE item_id = ? ORDER BY seq", (item_id,))
        return [OpRow(*row) for row in rows]

    def core_history(self, namespace: str) -> list[OpRow]:
        """Every logged version of a namespace's core paragraph, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_OP_COLUMNS} FROM ops WHERE item_id IS NULL AND memory_type = 'core' AND namespace = ? "
            "ORDER BY seq",
            (namespace,),
        )
        return [OpRow(*row) for row in rows]

    def job_ops(self, job_id: str, after: int = 0) -> list[OpRow]:
        """The operations tagged with this job after sequence number `after`, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_OP_COLUMNS} FROM ops WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, after)
        )
        return [OpRow(*row) for row in rows]

    def sql(self, statement: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run one statement in this transaction: for modules that own a table of the ledger (jobs)."""
        return self._conn.execute(statement, params)


class Ledger:
    """One connection per process, guarded by a lock; transactions are short (milliseconds)."""

    def __init__(self, path: Path, derived: Sequence[Path] = ()) -> None:
        """`derived`: what is built from this ledger (the search index). Where one exists the
        ledger must too: a lost memory.db is then an error, not a new empty memory that the
        index, the only other copy, would be rebuilt from (and so wiped)."""
        self.path = path
        self.derived = tuple(derived)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._fence = threading.local()
        self.ledger_id = ""

    def open(self) -> Ledger:
        """Open the ledger, creating it only where there is nothing: an existing file that is not a
        memory (empty, or another program's database) is refused and left as it is."""
        try:
            if not self.path.exists():
                self._create()
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            try:
                self._check_is_memory(conn)  # before the pragmas below, which would write to it
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                migrations.migrate(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path) from exc
        except OSError as exc:
            raise StorageError(f"storage: cannot create the data directory {self.path.parent}: {exc}") from exc
        self._conn = conn
        with self.read() as tx:
            self.ledger_id = tx.ledger_id()
        return self

    def _create(self) -> None:
        """A new ledger, built beside its place and linked in whole: memory.db never exists half-made
        (a 0-byte file is never a ledger in the making), and of several processes starting at
        once exactly one creates it. Private from the start: 0600 (SQLite gives its WAL and shared
        memory files the database's mode), in a 0700 folder."""
        for lost in self.derived:
            if lost.exists():
                raise StorageError(
                    f"storage: {self.path} is missing but {lost} was built from it: the memory was moved or deleted. "
                    f"Restore memory.db from a backup (or import an export); to start a new, empty memory "
                    f"instead, remove {lost} (database: {self.path})"
                )
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = self.path.with_name(f".{self.path.name}.new-{uuid.uuid4().hex}")
        os.close(os.open(draft, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            conn = sqlite3.connect(draft, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                migrations.migrate(conn)
            finally:
                conn.close()  # the last connection folds the WAL back in and removes it
            with suppress(FileExistsError):  # another process created it first: that one is the ledger
                os.link(draft, self.path)
        finally:
            draft.unlink(missing_ok=True)

    def _check_is_memory(self, conn: sqlite3.Connection) -> None:
        if self.path.stat().st_size == 0:
            what = "is empty (0 bytes)"
        elif conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'").fetchone():
            return
        else:
            what = "is an SQLite database but not an mcp-memalpha memory (it has no migrations table)"
        raise StorageError(
            f"storage: {self.path} {what}; it was left as it is and nothing was written. Restore memory.db from a "
            "backup (or import an export); to start a new, empty memory instead, move it away"
            + "".join(f" and remove {lost}" for lost in self.derived if lost.exists())
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def vacuum(self) -> None:
        """Rewrite the database file without its free pages (after a compaction)."""
        with self._lock:
            try:
                self.conn.execute("VACUUM")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in WAL mode the file shrinks only now
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path) from exc

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the ledger is not open")
        return self._conn

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
    def write(self) -> Iterator[Tx]:
        """A write transaction: all of it commits, or none of it does."""
        with self._lock:
            conn = self.conn
            if conn.in_transaction:
                raise RuntimeError("a ledger transaction is already open on this thread; nesting is not allowed")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path) from exc
            try:
                tx = Tx(conn)
                check = getattr(self._fence, "check", None)
                if check is not None:
                    check(tx)
                yield tx
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _end(conn, "ROLLBACK")
                raise _storage_error(exc, self.path) from exc
            except BaseException:
                _end(conn, "ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one consistent snapshot for everything read inside it."""
        with self._lock:
            conn = self.conn
            if conn.in_transaction:
                raise RuntimeError("a ledger transaction is already open on this thread; nesting is not allowed")
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path) from exc
            try:
                yield Tx(conn)
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path) from exc
            finally:
                _end(conn, "COMMIT")
