"""Compaction: bound the operation log and the job table, keeping what history, undo and the index need.

The log records every change, so without compaction it grows forever. A compaction, in one write
transaction (a crash leaves it undone, never half-done):

- deletes finished memorize jobs (done, failed, undone) older than `undo_days`, chunks included;
  that is the undo horizon: a job still in the table can be undone, a deleted one cannot;
- keeps, per memory and per namespace's core paragraph, its newest `history_versions` operations
  (all of them when unset). The newest is always kept: it is what the item became, which the
  doctor and the index's catch-up read;
- keeps every operation that reverting a remaining job reads (`jobs.revert_reads`), so undo and
  the crash-recovery revert stay exact;
- keeps the operations the search index has not applied yet, the one it last applied (its mark)
  and, for memories changed since, the state they had then: the index catches up from them.

`Memory.compact` runs it with every process's index sync held off; `mcp-memalpha compact` runs it
on demand, and writers run it every `compact_every` operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mcp_memalpha.jobs import revert_reads
from mcp_memalpha.store.ledger import Ledger, Tx


@dataclass(frozen=True)
class Compaction:
    """What one compaction did."""

    operations_before: int
    operations_removed: int
    jobs_removed: int
    history_versions: int | None
    undo_horizon: str  # finished jobs older than this were deleted

    def render(self) -> str:
        kept = "every version" if self.history_versions is None else f"the newest {self.history_versions}"
        return (
            f"operation log: removed {self.operations_removed:,} of {self.operations_before:,} operations "
            f"(kept {kept} of each memory, and what undo and the search index still need)\n"
            f"memorize jobs: removed {self.jobs_removed:,} finished before {self.undo_horizon} "
            "(they can no longer be undone)"
        )


def compact(
    ledger: Ledger,
    history_versions: int | None,
    undo_days: float,
    index_applied: int | None,
    now: datetime | None = None,
) -> Compaction:
    """Compact the ledger. `index_applied`: the sequence number the search index has applied, or
    None when the index will be rebuilt from the items anyway (it then needs no operations)."""
    horizon = ((now or datetime.now(UTC)) - timedelta(days=undo_days)).isoformat(timespec="microseconds")
    horizon = horizon.replace("+00:00", "Z")
    with ledger.write() as tx:
        before = tx.count_ops()
        jobs_removed = tx.delete_finished_jobs(horizon)
        removed = 0 if history_versions is None else _trim_log(tx, history_versions, index_applied)
    return Compaction(before, removed, jobs_removed, history_versions, horizon)


def _trim_log(tx: Tx, versions: int, index_applied: int | None) -> int:
    undo_reads = {seq for job_id, base_seq in tx.undoable_jobs() for seq in revert_reads(tx, job_id, base_seq)}
    return tx.trim_log(versions, index_applied, sorted(undo_reads))
