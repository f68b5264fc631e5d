"""`mcp-memalpha doctor`: check a data directory and repair its search index.

The ledger is the truth and cannot be rebuilt from anything else, so the doctor only checks it
(SQLite's integrity check, the schema's migrations, every item's latest operation agreeing with
the item, and the whole operation log: each operation's checksum, versions only going up), and
never writes it. The index is derived, so the doctor compares it with the ledger and, when
asked, rebuilds it from scratch. Damage to the ledger is reported as such: `--repair` does not
fix it (`Report.ledger_damaged`), so the doctor does not advise it then.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_memalpha.memory import Memory
from mcp_memalpha.store.index import STATE_FILE, TABLE
from mcp_memalpha.store.ledger import OP_DIGEST_COLUMNS, op_digest
from mcp_memalpha.store.migrations import MIGRATIONS, POSTGRES_MIGRATIONS

Run = Callable[..., Any]  # runs one statement: sqlite3's Connection.execute, or the ledger's Tx.sql

_RESTORE = "restore memory.db from a backup or an export (doctor --repair rebuilds only the search index)"


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)  # still there
    facts: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # found, and fixed
    ledger_damaged: bool = False  # a problem of the ledger itself, which --repair cannot fix

    @property
    def healthy(self) -> bool:
        return not self.problems

    def ledger_problem(self, problem: str) -> None:
        self.problems.append(problem)
        self.ledger_damaged = True

    def render(self) -> str:
        lines = [f"ok: {fact}" for fact in self.facts]
        lines += [f"repaired: {done}" for done in self.repaired]
        lines += [f"PROBLEM: {problem}" for problem in self.problems]
        return "\n".join(lines)


def check_ledger(memory: Memory, report: Report) -> None:
    if memory.ledger.backend == "postgres":  # the server guards its own files; the rows are checked below
        with memory.ledger.read() as tx:
            check_rows(tx.sql, report, [name for name, _ in POSTGRES_MIGRATIONS])
        return
    conn = sqlite3.connect(f"file:{memory.settings.ledger_path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result == "ok":
            report.facts.append("the SQLite ledger passes its integrity check")
        else:
            report.ledger_problem(f"the SQLite ledger is damaged ({result}); {_RESTORE}")
        check_rows(conn.execute, report, [name for name, _ in MIGRATIONS])
    finally:
        conn.close()


def check_rows(run: Run, report: Report, expected: list[str]) -> None:
    """The schema's migrations, every item against its latest logged operation, the whole log and
    the jobs, in SQL both backends read (`run` executes one statement with '?' placeholders)."""
    applied = [row[0] for row in run("SELECT name FROM migrations ORDER BY name")]
    if applied == expected:
        report.facts.append(f"the schema is current ({expected[-1]})")
    else:
        report.ledger_problem(f"schema migrations are {applied}, expected {expected}")
    # Every item must be what its latest logged operation says it became.
    drift = run(
        "SELECT COUNT(*) FROM items i JOIN ops o ON o.seq = (SELECT MAX(seq) FROM ops WHERE item_id = i.id) "
        "WHERE o.version != i.version OR (i.deleted_at IS NULL AND (o.content IS NULL OR o.content != i.content))"
    ).fetchone()[0]
    unlogged = run("SELECT COUNT(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM ops WHERE item_id = i.id)").fetchone()[
        0
    ]
    items = run("SELECT COUNT(*), SUM(CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END) FROM items").fetchone()
    if drift or unlogged:
        report.ledger_problem(
            f"{drift} items differ from their operation log and {unlogged} have no log entry; {_RESTORE}"
        )
    else:
        report.facts.append(f"all {items[0]} items ({items[1] or 0} live) match their operation log")
    check_history(run, report)
    check_jobs(run, report)


def check_history(run: Run, report: Report) -> None:
    """Every operation of the log, not only each item's newest: its checksum (from when it was
    written) and its version, which only goes up along a memory's history."""
    damaged: list[int] = []
    unchecked = total = 0
    for *values, seq, digest in run(f"SELECT {OP_DIGEST_COLUMNS}, seq, digest FROM ops ORDER BY seq"):
        total += 1
        if digest is None:
            unchecked += 1  # logged before checksums existed (migration 0004_op_digests)
        elif digest != op_digest(values):
            damaged.append(seq)
    (backwards,) = run(
        "SELECT COUNT(*) FROM (SELECT version, LAG(version) OVER "
        "(PARTITION BY COALESCE(item_id, 'core:' || namespace) ORDER BY seq) AS before FROM ops) AS steps "
        "WHERE version <= before"
    ).fetchone()
    if damaged:
        shown = ", ".join(map(str, damaged[:10])) + (" ..." if len(damaged) > 10 else "")
        report.ledger_problem(
            f"{len(damaged)} of {total} logged operations no longer match their checksum (seq {shown}): the "
            f"history was changed outside mcp-memalpha or the disk damaged it; memory_history may show wrong "
            f"versions. {_RESTORE[0].upper()}{_RESTORE[1:]}"
        )
    if backwards:
        report.ledger_problem(
            f"{backwards} logged operations go back in version along their memory's history; {_RESTORE}"
        )
    if not damaged and not backwards:
        checked = f"{total - unchecked} by checksum" + (
            f", {unchecked} older ones by version only" if unchecked else ""
        )
        report.facts.append(f"all {total} logged operations are intact ({checked})")


def check_jobs(run: Run, report: Report) -> None:
    """The memorize queue in plain words; a running job whose lease ran out is stuck until a server
    with a policy takes it over (that is not damage, but a user waiting on it should know)."""
    counts = dict(run("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    if not counts:
        return
    (stuck,) = run("SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_until < ?", (time.time(),)).fetchone()
    states = ", ".join(f"{counts[s]} {s}" for s in ("queued", "running", "done", "failed", "undone") if counts.get(s))
    report.facts.append(f"memorize jobs: {states}")
    if stuck:
        report.facts.append(
            f"{stuck} running memorize job(s) lost their worker (lease expired); a server started with --policy "
            "takes them over, reverting the interrupted attempt first"
        )


def check_index(memory: Memory, report: Report) -> bool:
    """Whether the index is current and holds exactly the ledger's live items.

    Two normal states are not problems: an index that was never built (it is built lazily, by
    the first search) and one that has not yet caught up with the newest writes (the next search
    applies them). Damage is an index that cannot be read, or that disagrees with the ledger.
    """
    if _never_built(memory):
        report.facts.append(
            "the search index is not built yet: the first search builds it from the ledger (not damage)"
        )
        return True
    try:
        indexed = memory.index.verify()
    except Exception as exc:  # unreadable index files
        report.problems.append(f"the search index cannot be read ({exc})")
        return False
    with memory.index.held(memory.ledger) as applied, memory.ledger.read() as tx:
        head = tx.head()
    if applied is None:
        report.problems.append("the search index was built from another history of the ledger (a restored memory.db?)")
        return False
    if applied < head:
        report.facts.append(
            f"the search index is readable and {head - applied} operations behind the ledger: "
            "the next search applies them (not damage)"
        )
        return True
    live = {item.id for item in memory.iter_items(None)}
    missing, extra = live - indexed, indexed - live
    if missing or extra:
        report.problems.append(
            f"the search index lacks {len(missing)} live memories and holds {len(extra)} that are not live"
        )
        return False
    report.facts.append(f"the search index holds exactly the {len(live)} live memories and is up to date")
    return True


def _never_built(memory: Memory) -> bool:
    """No trace of an index at all: neither its state nor its table (a state or a table without
    the other is a damaged index, not one to come)."""
    folder = memory.index.path
    return not (folder / STATE_FILE).exists() and not (folder / f"{TABLE}.lance").exists()


def diagnose(memory: Memory, repair: bool) -> Report:
    report = Report()
    check_ledger(memory, report)
    index = Report()
    index_ok = check_index(memory, index)
    if not index_ok and repair and report.ledger_damaged:
        # The index is rebuilt from the ledger: from a damaged one it would lose what only it still holds.
        index.problems.append("the search index was not rebuilt: the ledger it would be rebuilt from is damaged")
    elif not index_ok and repair:
        memory.index.rebuild(memory.ledger)
        after = Report()
        if check_index(memory, after):
            found = "; ".join(index.problems)
            report.repaired.append(f"{found}. Rebuilt it from the ledger: {after.facts[0]}")
            return report
        index = after
    report.facts += index.facts
    report.problems += index.problems
    return report
