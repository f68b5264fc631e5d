"""Copy a whole ledger into an empty one (`mcp-memalpha migrate`): every row of every table, with
its sequence numbers, checksums, versions, history and jobs, and the ledger's identity, so a
search index built from the source stays valid for the copy. All in one write transaction on the
target: a failure leaves it empty."""

from __future__ import annotations

from dataclasses import dataclass

from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.store.ledger import Ledger

# Every table of the ledger, with the columns copied (all of them).
TABLES = {
    "items": "id, namespace, memory_type, content, event_time, event_ts, created_at, updated_at, version, source, "
    "job_id, deleted_at",
    "core": "namespace, content, version, updated_at, source, job_id",
    "ops": "seq, at, namespace, op, memory_type, item_id, version, content, event_time, source, job_id, digest",
    "jobs": "seq, id, namespace, chunk, timestamp, state, attempts, base_seq, lease_owner, lease_until, created_at, "
    "started_at, finished_at, result, error",
}


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]  # table -> rows copied
    ledger_id: str

    def render(self) -> str:
        counts = ", ".join(f"{count:,} {table}" for table, count in self.rows.items())
        return f"copied {counts} (ledger {self.ledger_id})"


def copy_ledger(source: Ledger, target: Ledger) -> Copied:
    """Copy `source` into `target`, which must hold nothing yet (refused otherwise)."""
    with source.read() as read:
        rows = {
            table: read.sql(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall() for table, columns in TABLES.items()
        }
        ledger_id = read.ledger_id()
    with target.write() as tx:
        held = {table: int(tx.sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in TABLES}
        if any(held.values()):
            raise InvalidArgument("to", f"the target ledger is not empty ({held}); migrate only into an empty one")
        for table, columns in TABLES.items():
            tx.load_rows(table, columns, rows[table])
        tx.sql("UPDATE meta SET value = ? WHERE key = 'ledger_id'", (ledger_id,))
        tx.restart_sequences()
    target.ledger_id = ledger_id
    return Copied({table: len(found) for table, found in rows.items()}, ledger_id)
