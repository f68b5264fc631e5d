"""`mcp-memalpha doctor`: check a data directory and repair its search index.

The ledger is the truth and cannot be rebuilt from anything else, so the doctor only checks it
(SQLite's integrity check, the schema's migrations, every item's latest operation agreeing with
the item). The index is derived, so the doctor compares it with the ledger and, when asked,
rebuilds it from scratch.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

from mcp_memalpha.memory import Memory
from mcp_memalpha.store.index import STATE_FILE, TABLE
from mcp_memalpha.store.migrations import MIGRATIONS


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)  # still there
    facts: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # found, and fixed

    @property
    def healthy(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = [f"ok: {fact}" for fact in self.facts]
        lines += [f"repaired: {done}" for done in self.repaired]
        lines += [f"PROBLEM: {problem}" for problem in self.problems]
        return "\n".join(lines)


def check_ledger(memory: Memory, report: Report) -> None:
    conn = sqlite3.connect(f"file:{memory.settings.ledger_path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result == "ok":
            report.facts.append("the SQLite ledger passes its integrity check")
        else:
            report.problems.append(f"the SQLite ledger is damaged ({result}); restore it from a backup or an export")
        applied = [row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY name")]
        expected = [name for name, _ in MIGRATIONS]
        if applied == expected:
            report.facts.append(f"the schema is current ({expected[-1]})")
        else:
            report.problems.append(f"schema migrations are {applied}, expected {expected}")
        # Every item must be what its latest logged operation says it became.
        drift = conn.execute(
            "SELECT COUNT(*) FROM items i JOIN ops o ON o.seq = (SELECT MAX(seq) FROM ops WHERE item_id = i.id) "
            "WHERE o.version != i.version OR (i.deleted_at IS NULL AND o.content IS NOT i.content)"
        ).fetchone()[0]
        unlogged = conn.execute(
            "SELECT COUNT(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM ops WHERE item_id = i.id)"
        ).fetchone()[0]
        items = conn.execute("SELECT COUNT(*), SUM(deleted_at IS NULL) FROM items").fetchone()
        if drift or unlogged:
            report.problems.append(f"{drift} items differ from their operation log and {unlogged} have no log entry")
        else:
            report.facts.append(f"all {items[0]} items ({items[1] or 0} live) match their operation log")
        check_jobs(conn, report)
    finally:
        conn.close()


def check_jobs(conn: sqlite3.Connection, report: Report) -> None:
    """The memorize queue in plain words; a running job whose lease ran out is stuck until a server
    with a policy takes it over (that is not damage, but a user waiting on it should know)."""
    counts = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    if not counts:
        return
    (stuck,) = conn.execute(
        "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_until < ?", (time.time(),)
    ).fetchone()
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
    if not check_index(memory, index) and repair:
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
