"""SIGKILL a server in the middle of a stream of writes; after each restart nothing acknowledged is
lost. The harness is benchmarks/crash.py (50 kills for the figures in docs/reliability.md); CI
runs it at a few kills."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.crash import CrashReport, Expected, Write, ledger_problems, run_crash, settle_pending
from benchmarks.reliability import ItemState, LedgerSnapshot, Op

KILLS = 6


@pytest.mark.anyio
async def test_sigkill_mid_stream_loses_no_acknowledged_write(tmp_path: Path) -> None:
    report = await run_crash(tmp_path / "data", kills=KILLS, seed=7)
    assert report.problems == []
    assert report.kills == KILLS and report.checks == KILLS and report.failed_checks == 0
    assert (report.lost, report.unexpected) == (0, 0)
    assert all(report.acknowledged[kind] > 0 for kind in ("insert", "update", "delete", "core"))
    assert report.doctor == "healthy"


INSERT, UPDATE = Op(1, "insert", "s-aaaaaa", 1, "fact ck1"), Op(2, "update", "s-aaaaaa", 2, "fact ck2")


def snapshot(items: dict[str, ItemState], ops: list[Op]) -> LedgerSnapshot:
    return LedgerSnapshot(integrity="ok", items=items, ops=ops)


def test_the_checks_catch_a_lost_or_unexpected_write() -> None:
    """The harness's own checks fail when they should (so a green run means something)."""
    expected = Expected()
    expected.apply(Write("new_memory_insert", {}, "insert", None, 1, "fact ck1"), "s-aaaaaa")
    expected.apply(Write("memory_update", {}, "update", "s-aaaaaa", 2, "fact ck2"), "s-aaaaaa")
    intact = {"s-aaaaaa": ItemState(2, "fact ck2", False)}
    assert ledger_problems(expected, snapshot(intact, [INSERT, UPDATE]), CrashReport()) == []

    rolled_back = {"s-aaaaaa": ItemState(1, "fact ck1", False)}
    report = CrashReport()
    assert ledger_problems(expected, snapshot(rolled_back, [INSERT, UPDATE]), report) and report.lost == 1
    stray = intact | {"s-bbbbbb": ItemState(1, "never acknowledged", False)}
    report = CrashReport()
    stray_ops = [INSERT, UPDATE, Op(3, "insert", "s-bbbbbb", 1, "never acknowledged")]
    assert ledger_problems(expected, snapshot(stray, stray_ops), report) and report.unexpected == 2
    # the log is compared by content: as many operations as writes, but one of them other, is caught
    report = CrashReport()
    swapped = [INSERT, Op(2, "update", "s-aaaaaa", 2, "another text ck9")]
    assert ledger_problems(expected, snapshot(intact, swapped), report) and report.unexpected == 2

    # A write in flight at the kill that landed is adopted; one that did not is simply absent.
    expected.pending = Write("memory_delete", {}, "delete", "s-aaaaaa", 3, None)
    landed = {"s-aaaaaa": ItemState(3, "fact ck2", True)}
    landed_ops = [INSERT, UPDATE, Op(3, "delete", "s-aaaaaa", 3, None)]
    report = CrashReport()
    settle_pending(expected, snapshot(landed, landed_ops), report)
    assert report.in_flight_landed == 1 and ledger_problems(expected, snapshot(landed, landed_ops), report) == []
