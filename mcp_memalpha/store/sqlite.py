"""The SQLite ledger: one file (memory.db) in the data directory, the default backend.

`write()` takes SQLite's write lock with BEGIN IMMEDIATE, so several processes on one data
directory serialize their writes instead of losing them (and the log's AUTOINCREMENT numbers
become visible in order). WAL mode lets readers proceed while a writer works;
`synchronous=FULL` makes an acknowledged write survive a power cut.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from mcp_memalpha.errors import StorageError
from mcp_memalpha.store import migrations
from mcp_memalpha.store.ledger import SQLITE, Ledger, Tx

BUSY_TIMEOUT_S = 30.0


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


def _end(conn: sqlite3.Connection, statement: str) -> None:
    """COMMIT or ROLLBACK if a transaction is still open: SQLite rolls back by itself after some
    errors (disk full, I/O), and a ROLLBACK then would fail and hide the real error."""
    if conn.in_transaction:
        conn.execute(statement)


class SqliteLedger(Ledger):
    """One connection per process, guarded by a lock; transactions are short (milliseconds)."""

    backend = "sqlite"

    def __init__(self, path: Path, derived: Sequence[Path] = ()) -> None:
        """`derived`: what is built from this ledger (the search index). Where one exists the
        ledger must too: a lost memory.db is then an error, not a new empty memory that the
        index, the only other copy, would be rebuilt from (and so wiped)."""
        super().__init__()
        self.path = path
        self.derived = tuple(derived)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    def open(self) -> SqliteLedger:
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
    def _transaction(self, write: bool, serialize: bool = True) -> Iterator[Tx]:
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path) from exc
            if write:
                try:
                    yield Tx(conn, SQLITE, serialized=serialize)
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    _end(conn, "ROLLBACK")
                    raise _storage_error(exc, self.path) from exc
                except BaseException:
                    _end(conn, "ROLLBACK")
                    raise
            else:
                try:
                    yield Tx(conn, SQLITE, serialized=False)
                except sqlite3.Error as exc:
                    raise _storage_error(exc, self.path) from exc
                finally:
                    _end(conn, "COMMIT")
