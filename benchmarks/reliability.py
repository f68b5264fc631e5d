"""What the reliability harnesses (soak.py, crash.py) share: reading a ledger behind the
server's back, the doctor, percentiles and Markdown tables.

The ledger is read with a separate read-only SQLite connection, never through the server: the
point is to see what is on disk, not what a server says is there.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mcp_memalpha.cli import launch_command


@dataclass(frozen=True)
class ItemState:
    version: int
    content: str  # kept in the items table after a delete too
    deleted: bool


@dataclass(frozen=True)
class Op:
    seq: int
    op: str
    item_id: str | None  # None for core memory
    version: int
    content: str | None  # None for a deletion


@dataclass
class LedgerSnapshot:
    integrity: str = ""
    items: dict[str, ItemState] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    core: tuple[int, str] = (0, "")  # version, content of namespace 'default'


def read_ledger(path: Path) -> LedgerSnapshot:
    """Integrity check, every item, every logged operation and the core paragraph."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        snapshot = LedgerSnapshot(integrity=conn.execute("PRAGMA integrity_check").fetchone()[0])
        conn.execute("BEGIN")  # one consistent view of all three tables
        for item_id, version, content, deleted_at in conn.execute("SELECT id, version, content, deleted_at FROM items"):
            snapshot.items[item_id] = ItemState(version, content, deleted_at is not None)
        rows = conn.execute("SELECT seq, op, item_id, version, content FROM ops ORDER BY seq")
        snapshot.ops = [Op(*row) for row in rows]
        core = conn.execute("SELECT version, content FROM core WHERE namespace = 'default'").fetchone()
        snapshot.core = (core[0], core[1]) if core else (0, "")
        conn.execute("COMMIT")
        return snapshot
    finally:
        conn.close()


def run_doctor(data_dir: Path, database_url: str | None = None) -> tuple[int, str]:
    """`mcp-memalpha doctor` on the data directory (and PostgreSQL ledger): its exit status and report."""
    result = subprocess.run(
        [*launch_command(), "doctor", "--data-dir", str(data_dir)],
        env={**os.environ, "MEMALPHA_DATABASE_URL": database_url} if database_url else None,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def markdown_table(rows: list[tuple[str, str]]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def token_of(content: str | None) -> str:
    """The unique token the harnesses end every content with."""
    return content.rsplit(" ", 1)[-1] if content else ""


def finish(text: str, problems: list[str], output: Path | None) -> None:
    """Print the report, write it to `output` if asked, exit 1 when any check found a problem."""
    import sys

    import click

    click.echo(text)
    if output is not None:
        output.write_text(text)
    sys.exit(1 if problems else 0)
