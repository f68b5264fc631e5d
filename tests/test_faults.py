"""Disk and resource faults: a full disk, a read-only or damaged data directory, a damaged
search index, an older schema. Each ends in a clear error or a rebuilt index, never in a silent
loss, and the memory keeps serving what it still can."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_memalpha import CallContext, Memory, Settings, StorageError
from mcp_memalpha.doctor import diagnose
from mcp_memalpha.ids import new_id
from mcp_memalpha.store.migrations import MIGRATIONS
from mcp_memalpha.tools import execute
from tests.conftest import call, command, connect, http_server, server_env
from tests.test_hostile_input import check_invariants


def ledger_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the ledger holds, read through a separate connection."""
    conn = sqlite3.connect(path)
    try:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}")) for table in ("items", "ops", "core")}
    finally:
        conn.close()


def fill(memory: Memory, count: int = 30) -> list[str]:
    """`count` semantic facts with unique tokens (tok0, tok1, ...), the first one deleted."""
    ctx = CallContext()
    ids = [memory.insert(ctx, "semantic", f"fact {i} about herons tok{i}").id for i in range(count)]
    memory.delete(ctx, "semantic", ids[0])
    memory.set_core(ctx, "The user watches herons.")
    memory.sync_index()
    return ids


def assert_searches_right(memory: Memory, ids: list[str]) -> None:
    """Every method finds live facts by their token and never returns the deleted one."""
    ctx = CallContext()
    for method in ("bm25", "vector", "hybrid"):
        for i in (1, len(ids) // 2, len(ids) - 1):
            hits = memory.search(ctx, f"herons tok{i}", method=method, top_k=3).hits
            assert hits[0].item.id == ids[i], (method, i)
        everything = memory.search(ctx, "fact about herons", method=method, top_k=100).hits
        assert ids[0] not in {hit.item.id for hit in everything}
    assert memory.index.ids() == set(ids[1:])


# ---- full disk ------------------------------------------------------------------------------


def test_full_disk_refuses_writes_clearly_and_they_resume_when_space_frees(tmp_path: Path) -> None:
    """A real SQLITE_FULL: `max_page_count` caps the database at its current size, which is what
    a full disk looks like to SQLite (the next page cannot be allocated). Each write is larger
    than a page, so none can fit in what is left of the pages there are."""
    memory = Memory(Settings(data_dir=tmp_path, core_capacity_tokens=4096)).open()
    ids = fill(memory)
    ctx = CallContext()
    conn = memory.ledger.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    big = "a long note about herons " * 300
    writes = [
        ("new_memory_insert", {"memory_type": "semantic", "content": big}),
        ("memory_update", {"memory_type": "semantic", "memory_id": ids[3], "new_content": big}),
        ("memory_update", {"memory_type": "core", "new_content": "The user watches herons. " * 200}),
    ]
    for name, arguments in writes:
        before = ledger_rows(memory.settings.ledger_path)
        with pytest.raises(StorageError) as refused:
            execute(memory, ctx, name, arguments)
        assert "the disk is full; nothing was written. Free space on the disk holding" in str(refused.value)
        assert ledger_rows(memory.settings.ledger_path) == before  # nothing half-written
    # Reads go on while the disk is full.
    assert_searches_right(memory, ids)
    assert execute(memory, ctx, "memory_get", {"memory_ids": [ids[3]]})["memories"][0]["version"] == 1

    conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
    written = execute(memory, ctx, "new_memory_insert", {"memory_type": "semantic", "content": big + "tokfreed"})
    assert execute(memory, ctx, "memory_update", writes[1][1])["version"] == 2
    found = execute(memory, ctx, "search_memory", {"query": "tokfreed", "search_method": "bm25", "top_k": 1})
    assert found["results"][0]["memory_id"] == written["memory_id"]
    check_invariants(memory)
    memory.close()


class FailingCommit:
    """The ledger's connection, except that committing a write fails with `message`: how SQLite
    reports a disk that fills, turns read-only or fails while a transaction is written out."""

    def __init__(self, conn: sqlite3.Connection, message: str) -> None:
        self._conn = conn
        self._message = message
        self._writing = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "BEGIN IMMEDIATE":
            self._writing = True
        elif sql == "COMMIT" and self._writing:
            self._writing = False
            raise sqlite3.OperationalError(self._message)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize(
    ("sqlite_message", "says"),
    [
        ("database or disk is full", "the disk is full; nothing was written. Free space on the disk holding"),
        ("attempt to write a readonly database", "the data directory is read-only; nothing was written. Make"),
        ("disk I/O error", "the disk could not be read or written (disk I/O error); nothing was written. Check"),
        ("database disk image is malformed", "the memory database is damaged (database disk image is malformed)"),
    ],
)
def test_a_failed_commit_is_a_plain_storage_error_and_nothing_is_written(
    memory: Memory, sqlite_message: str, says: str
) -> None:
    ids = fill(memory, 5)
    ctx = CallContext()
    real = memory.ledger.conn
    before = ledger_rows(memory.settings.ledger_path)
    memory.ledger._conn = FailingCommit(real, sqlite_message)  # type: ignore[assignment]
    for name, arguments in [
        ("new_memory_insert", {"memory_type": "episodic", "content": "went to the lake"}),
        ("memory_delete", {"memory_type": "semantic", "memory_id": ids[2], "expected_version": 1}),
        ("memory_update", {"memory_type": "core", "new_content": "The user fishes."}),
    ]:
        with pytest.raises(StorageError) as refused:
            execute(memory, ctx, name, arguments)
        assert str(refused.value).startswith(f"storage: {says}"), refused.value
        assert not real.in_transaction
    # Reads (which commit nothing) still answer.
    assert execute(memory, ctx, "core_memory_read", {})["content"] == "The user watches herons."
    memory.ledger._conn = real
    assert ledger_rows(memory.settings.ledger_path) == before
    assert execute(memory, ctx, "memory_delete", {"memory_type": "semantic", "memory_id": ids[2]})["version"] == 2
    check_invariants(memory)


# ---- read-only or damaged data directory ------------------------------------------------------

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3


def _drop_file_capabilities() -> None:
    """In the child before exec: give up the capabilities that let root ignore file permissions,
    so a root-run server meets a read-only folder as any user does."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def can_drop_file_capabilities() -> bool:
    try:
        return subprocess.run(["true"], preexec_fn=_drop_file_capabilities, check=False).returncode == 0
    except subprocess.SubprocessError:  # the prctl failed in the child
        return False


def set_writable(folder: Path, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def test_read_only_data_directory_is_refused_at_start_with_a_plain_reason(tmp_path: Path) -> None:
    """chmod a-w on the folder and its files, then `mcp-memalpha serve` on it. SQLite cannot open
    a WAL database in a folder it cannot write (even to read it), so the server stops at start with
    the reason; it never half-serves. Run as root, the server gives up the capabilities that
    bypass file permissions first (otherwise root would simply write)."""
    as_root = os.geteuid() == 0
    if as_root and not can_drop_file_capabilities():
        pytest.skip("running as root without CAP_SETPCAP: cannot make file permissions apply to the server")
    data = tmp_path / "data"
    with Memory(Settings(data_dir=data)) as memory:
        ids = fill(memory, 10)
    before = (data / "memory.db").read_bytes()
    set_writable(data, False)
    try:
        server = subprocess.run(
            [*command(), "serve", "--data-dir", str(data)],
            input=json.dumps(INITIALIZE) + "\n",
            capture_output=True,
            text=True,
            env=server_env(),
            timeout=120,
            preexec_fn=_drop_file_capabilities if as_root else None,
        )
    finally:
        set_writable(data, True)
    assert server.returncode != 0
    assert "storage: the data directory is read-only; nothing was written. Make " in server.stderr
    assert '"result"' not in server.stdout  # no half-working server answered
    assert (data / "memory.db").read_bytes() == before
    with Memory(Settings(data_dir=data)) as memory:  # writable again: everything is there
        assert_searches_right(memory, ids)


def test_a_damaged_ledger_file_is_a_plain_error_naming_the_doctor(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with Memory(settings) as memory:
        fill(memory, 5)
    settings.ledger_path.write_bytes(b"this is not a database" * 500)
    with pytest.raises(StorageError, match=r"the memory database is damaged \(file is not a database\).*doctor"):
        Memory(settings).open()


# ---- damaged search index -------------------------------------------------------------------


def _garbage(paths: Any) -> None:
    for path in list(paths):
        if path.is_file():
            path.write_bytes(b"garbage" * 10)


def _state(index: Path, **changes: Any) -> None:
    state = json.loads((index / "state.json").read_text())
    (index / "state.json").write_text(json.dumps(state | changes))


INDEX_DAMAGE: dict[str, Callable[[Path], None]] = {
    "data files garbage": lambda index: _garbage((index / "items.lance" / "data").iterdir()),
    "data files deleted": lambda index: shutil.rmtree(index / "items.lance" / "data"),
    "full-text index garbage": lambda index: _garbage((index / "items.lance" / "_indices").rglob("*")),
    "scalar and full-text indexes deleted": lambda index: shutil.rmtree(index / "items.lance" / "_indices"),
    "manifests garbage": lambda index: _garbage((index / "items.lance" / "_versions").iterdir()),
    "manifests deleted": lambda index: shutil.rmtree(index / "items.lance" / "_versions"),
    "every file garbage": lambda index: _garbage(index.rglob("*")),
    "state.json garbage": lambda index: (index / "state.json").write_text("{not json"),
    "state.json deleted": lambda index: (index / "state.json").unlink(),
    "state.json ahead of the ledger": lambda index: _state(index, applied_seq=10_000),
    "state.json behind the ledger": lambda index: _state(index, applied_seq=3),
}


@pytest.mark.parametrize("damage", sorted(INDEX_DAMAGE))
def test_a_damaged_index_is_rebuilt_by_search_and_by_the_doctor(tmp_path: Path, damage: str) -> None:
    searched, doctored = Settings(data_dir=tmp_path / "a"), Settings(data_dir=tmp_path / "b")
    with Memory(searched) as memory:
        ids = fill(memory)
    shutil.copytree(searched.data_dir, doctored.data_dir)
    for settings in (searched, doctored):
        INDEX_DAMAGE[damage](settings.index_path)

    with Memory(searched) as memory:  # searches answer right: the index is rebuilt from the ledger
        assert_searches_right(memory, ids)
        assert diagnose(memory, repair=False).healthy

    with Memory(doctored) as memory:  # the doctor finds the damage, and --repair fixes it
        found = diagnose(memory, repair=False)
        assert not found.healthy and "search index" in found.problems[0]
        repaired = diagnose(memory, repair=True)
        assert repaired.healthy and repaired.repaired
    with Memory(doctored) as memory:
        assert_searches_right(memory, ids)


@pytest.mark.anyio
async def test_a_server_on_a_damaged_index_answers_from_a_rebuilt_one(tmp_path: Path) -> None:
    """The same through a spawned server: its data files are garbage, yet its searches are right."""
    data = tmp_path / "data"
    with Memory(Settings(data_dir=data)) as memory:
        ids = fill(memory)
    INDEX_DAMAGE["data files garbage"](data / "index")
    with http_server(data, "--log-level", "WARNING") as (url, _process):
        async with connect(url) as client:
            for method in ("bm25", "hybrid"):
                found = await call(client, "search_memory", query="herons tok7", search_method=method, top_k=1)
                assert found["results"][0]["memory_id"] == ids[7]
            everything = await call(client, "search_memory", query="fact about herons", top_k=100)
            assert {hit["memory_id"] for hit in everything["results"]} == set(ids[1:])


def test_a_query_failing_on_a_sound_index_does_not_rebuild_it(memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only damage triggers a rebuild: a failure the index files cannot explain is reported, not
    answered by seconds of rebuilding on every search."""
    fill(memory)
    generation = json.loads((memory.settings.index_path / "state.json").read_text())["generation"]

    def failing(*_: Any) -> None:
        raise RuntimeError("a failure that is not the index's")

    monkeypatch.setattr(memory, "_rank_once", failing)
    with pytest.raises(RuntimeError, match="not the index's"):
        memory.search(CallContext(), "herons", method="bm25")
    assert json.loads((memory.settings.index_path / "state.json").read_text())["generation"] == generation


# ---- older schema ---------------------------------------------------------------------------

ITEM_COLUMNS_0001 = (
    "id, namespace, memory_type, content, event_time, event_ts, created_at, updated_at, version, source, job_id, "
    "deleted_at"
)
OP_COLUMNS_0001 = "at, namespace, op, memory_type, item_id, version, content, event_time, source, job_id"


def old_ledger(path: Path, migrations: int) -> list[str]:
    """A memory.db as an older release left it: only the first `migrations` migrations, in
    SQLite's default rollback-journal mode, holding items (one deleted, one updated), their
    operations and a core paragraph. Returns the ids, live ones first."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, statements in MIGRATIONS[:migrations]:
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (?, '2025-01-01T00:00:00Z')", (name,))
    at = "2025-01-01T00:00:00.000000Z"
    ids = []
    for i in range(40):
        kind = "episodic" if i % 2 else "semantic"
        item_id, content = new_id(kind), f"old memory {i} kept tokold{i}"
        # each event at its own hour: events sharing a time are indexed with each other's words
        hour = i // 2
        event = (f"2024-03-01T{hour:02d}:00:00", 1709251200.0 + 3600 * hour) if kind == "episodic" else (None, None)
        deleted = at if i == 39 else None
        version = 2 if i in (5, 39) else 1
        row = (item_id, "default", kind, content, *event, at, at, version, "client", None, deleted)
        conn.execute(f"INSERT INTO items ({ITEM_COLUMNS_0001}) VALUES ({','.join('?' * 12)})", row)
        ops = [("insert", 1, content)] + ([("update", 2, content)] if i == 5 else [])
        ops += [("delete", 2, None)] if i == 39 else []
        for op, op_version, op_content in ops:
            conn.execute(
                f"INSERT INTO ops ({OP_COLUMNS_0001}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (at, "default", op, kind, item_id, op_version, op_content, event[0], "client", None),
            )
        ids.append(item_id)
    conn.execute("INSERT INTO core VALUES ('default', 'The user kept old notes.', 1, ?, 'client', NULL)", (at,))
    conn.execute(
        f"INSERT INTO ops ({OP_COLUMNS_0001}) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (at, "default", "core_update", "core", None, 1, "The user kept old notes.", None, "client", None),
    )
    conn.close()
    return ids


def rows_as_of_0001(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            "items": sorted(conn.execute(f"SELECT {ITEM_COLUMNS_0001} FROM items")),
            "ops": sorted(conn.execute(f"SELECT seq, {OP_COLUMNS_0001} FROM ops")),
            "core": sorted(conn.execute("SELECT namespace, content, version FROM core")),
        }
    finally:
        conn.close()


@pytest.mark.parametrize("applied", range(1, len(MIGRATIONS)), ids=lambda n: f"up_to_{MIGRATIONS[n - 1][0]}")
def test_an_older_schema_is_migrated_and_keeps_every_row(tmp_path: Path, applied: int) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    ids = old_ledger(settings.ledger_path, applied)
    before = rows_as_of_0001(settings.ledger_path)
    ctx = CallContext()
    with Memory(settings) as memory:
        assert rows_as_of_0001(settings.ledger_path) == before  # migrating changed no row
        report = diagnose(memory, repair=False)
        assert f"the schema is current ({MIGRATIONS[-1][0]})" in report.facts
        live, deleted = ids[:-1], ids[-1]
        found, missing = memory.get(ctx, [*live, deleted])
        assert [item.id for item in found] == live and missing == [deleted]
        for i in (0, 5, 38):
            hits = memory.search(ctx, f"tokold{i}", method="bm25", top_k=1).hits
            assert hits[0].item.id == ids[i]
        assert memory.core(ctx).content == "The user kept old notes."
        # and it takes new writes on top of the old versions
        assert memory.update(ctx, "semantic", ids[4], "revised", expected_version=1).version == 2
        assert memory.update(ctx, "episodic", ids[5], "revised again", expected_version=2).version == 3
        assert memory.set_core(ctx, "The user has new notes.", expected_version=1).version == 2
        check_invariants(memory)  # (which catches the index up)
        assert diagnose(memory, repair=False).healthy


# ---- an empty, foreign or missing ledger ---------------------------------------------------


def test_a_zero_byte_ledger_is_refused_and_the_index_kept(tmp_path: Path) -> None:
    """A 0-byte memory.db was served as an empty memory, and the index (the only other copy) was
    then rebuilt from it, i.e. wiped."""
    settings = Settings(data_dir=tmp_path / "data")
    with Memory(settings) as memory:
        ids = fill(memory, 5)
    index_files = {p: p.read_bytes() for p in settings.index_path.rglob("*") if p.is_file()}
    settings.ledger_path.write_bytes(b"")
    for path in settings.data_dir.glob("memory.db-*"):
        path.unlink()
    with pytest.raises(StorageError, match=r"memory.db is empty \(0 bytes\); it was left as it is") as error:
        Memory(settings).open()
    assert "Restore memory.db from a backup" in str(error.value) and str(settings.index_path) in str(error.value)
    assert settings.ledger_path.read_bytes() == b""
    assert {p: p.read_bytes() for p in settings.index_path.rglob("*") if p.is_file()} == index_files
    server = subprocess.run(
        [*command(), "serve", "--data-dir", str(settings.data_dir)],
        input="",
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=120,
    )
    assert server.returncode != 0 and "is empty (0 bytes)" in server.stderr
    assert settings.ledger_path.read_bytes() == b"" and len(ids) == 5


def test_another_programs_database_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('not ours')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="is an SQLite database but not an mcp-memalpha memory"):
        Memory(Settings(data_dir=tmp_path)).open()
    assert path.read_bytes() == before and not (tmp_path / "memory.db-wal").exists()


def test_a_missing_ledger_beside_an_index_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with Memory(settings) as memory:
        fill(memory, 5)
    settings.ledger_path.unlink()
    with pytest.raises(StorageError, match=r"memory.db is missing but .*index was built from it"):
        Memory(settings).open()
    assert not settings.ledger_path.exists() and (settings.index_path / "state.json").exists()


def test_servers_starting_at_once_create_one_ledger_never_a_partial_one(tmp_path: Path) -> None:
    """Creation links in a finished ledger: no process ever sees a 0-byte memory.db and refuses it."""
    data = tmp_path / "data"
    script = (
        "import sys, pathlib; from mcp_memalpha.store.sqlite import SqliteLedger; "
        "SqliteLedger(pathlib.Path(sys.argv[1])).open()"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(data / "memory.db")], stderr=subprocess.PIPE, env=server_env()
        )
        for _ in range(6)
    ]
    errors = [process.communicate(timeout=120)[1] for process in starts]
    assert [process.returncode for process in starts] == [0] * 6, errors
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == []  # no drafts left behind
    with Memory(Settings(data_dir=data)) as memory:
        assert memory.ledger.ledger_id and list(memory.iter_items(None, include_deleted=True)) == []
