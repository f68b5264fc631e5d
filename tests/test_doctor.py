"""`mcp-memalpha doctor` finds a deleted or corrupted index and repairs it from the ledger."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

from mcp_memalpha import CallContext, Memory, Settings
from tests.conftest import command, server_env


def doctor(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "doctor", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=120,
    )


def fill(data_dir: Path) -> set[str]:
    with Memory(Settings(data_dir=data_dir)) as memory:
        ctx = CallContext()
        ids = {memory.insert(ctx, "semantic", f"Fact {i} about herons").id for i in range(40)}
        memory.delete(ctx, "semantic", sorted(ids)[0])
        memory.sync_index()
    return ids - {sorted(ids)[0]}


def test_healthy_directory(tmp_path: Path) -> None:
    fill(tmp_path)
    result = doctor(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "integrity check" in result.stdout and "exactly the 39 live memories" in result.stdout


def test_index_not_built_yet_is_no_problem(tmp_path: Path) -> None:
    """The index is built lazily, by the first search: before it, the doctor says so and exits 0."""
    with Memory(Settings(data_dir=tmp_path)) as memory:
        memory.insert(CallContext(), "semantic", "Herons nest in colonies")
        memory.insert(CallContext(), "episodic", "Saw a heron at the lake")
    result = doctor(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROBLEM" not in result.stdout
    assert "not built yet: the first search builds it" in result.stdout


def test_index_behind_the_ledger_is_no_problem(tmp_path: Path) -> None:
    fill(tmp_path)
    with Memory(Settings(data_dir=tmp_path)) as memory:
        memory.insert(CallContext(), "semantic", "One more fact about herons")
    result = doctor(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 operations behind the ledger: the next search applies them" in result.stdout


def test_deleted_index_table_is_found_and_rebuilt(tmp_path: Path) -> None:
    live = fill(tmp_path)
    shutil.rmtree(tmp_path / "index" / "items.lance")
    found = doctor(tmp_path)
    assert found.returncode == 1 and "PROBLEM: the search index" in found.stdout and "--repair" in found.stderr
    repaired = doctor(tmp_path, "--repair")
    assert repaired.returncode == 0, repaired.stdout
    assert "repaired:" in repaired.stdout and "exactly the 39 live memories" in repaired.stdout
    with Memory(Settings(data_dir=tmp_path)) as memory:
        assert memory.index.ids() == live
        assert len(memory.search(CallContext(), "herons", method="bm25", top_k=50).hits) == 39


def test_corrupted_index_is_found_and_rebuilt(tmp_path: Path) -> None:
    live = fill(tmp_path)
    for path in (tmp_path / "index" / "items.lance").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    found = doctor(tmp_path)
    assert found.returncode == 1 and "PROBLEM" in found.stdout
    assert doctor(tmp_path, "--repair").returncode == 0
    with Memory(Settings(data_dir=tmp_path)) as memory:
        assert memory.index.ids() == live


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = doctor(tmp_path / "nowhere")
    assert result.returncode == 1 and "no memory at" in result.stderr


def test_a_zero_byte_ledger_is_reported_never_rewritten(tmp_path: Path) -> None:
    """The doctor used to turn a 0-byte memory.db into a fresh ledger and then advise --repair,
    which would have rebuilt (wiped) the index from it."""
    fill(tmp_path)
    (tmp_path / "memory.db").write_bytes(b"")
    for path in tmp_path.glob("memory.db-*"):
        path.unlink()
    for args in ((), ("--repair",)):
        result = doctor(tmp_path, *args)
        assert result.returncode == 1 and "memory.db is empty (0 bytes); it was left as it is" in result.stderr
        assert "--repair" not in result.stderr + result.stdout
        assert (tmp_path / "memory.db").read_bytes() == b""
    assert json.loads((tmp_path / "index" / "state.json").read_text())["complete"]


def test_damage_to_older_history_is_found_and_repair_is_not_advised(tmp_path: Path) -> None:
    """The doctor compared each item with its newest operation only: a changed byte in an older
    version passed as healthy."""
    fill(tmp_path)
    with Memory(Settings(data_dir=tmp_path)) as memory:
        ctx = CallContext()
        item = memory.insert(ctx, "semantic", "The heron nests by the reservoir")
        for version in (1, 2):
            memory.update(ctx, "semantic", item.id, f"The heron nests by the reservoir, year {version}")
        memory.sync_index()
    assert doctor(tmp_path).returncode == 0
    conn = sqlite3.connect(tmp_path / "memory.db")
    with conn:
        conn.execute(
            "UPDATE ops SET content = 'The heron nests by the reservoiR' WHERE item_id = ? AND version = 1", (item.id,)
        )
    conn.close()
    found = doctor(tmp_path)
    assert found.returncode == 1
    assert "PROBLEM: 1 of 44 logged operations no longer match their checksum" in found.stdout
    assert "Restore memory.db from a backup or an export (doctor --repair rebuilds only" in found.stdout
    assert "run `mcp-memalpha doctor --repair`" not in found.stderr
    assert "all 41 items" in found.stdout  # the newest states still agree: only the history changed
