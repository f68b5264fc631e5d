"""The soak test (benchmarks/soak.py) at a reduced size: servers over stdio and HTTP on one data
directory under colliding writes lose nothing, refuse only real conflicts and stay searchable.
The full-size figures are in docs/reliability.md."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.reliability import ItemState, LedgerSnapshot, Op
from benchmarks.soak import (
    Ack,
    Driver,
    Refusal,
    Shared,
    SoakReport,
    check_final_state,
    check_log,
    check_refusals,
    run_soak,
)

PROCESSES, OPERATIONS = 3, 150


@pytest.mark.anyio
async def test_soak_at_reduced_size(tmp_path: Path) -> None:
    report = await run_soak(tmp_path / "data", PROCESSES, OPERATIONS, seed=5)
    assert report.problems == []
    assert report.transports == {"stdio": 2, "http": 1}
    assert sum(report.operations.values()) == PROCESSES * OPERATIONS
    assert all(report.operations[kind] > 0 for kind in ("insert", "update", "delete", "search"))
    assert (report.lost, report.duplicates, report.unexpected, report.wrong_final) == (0, 0, 0, 0)
    assert (report.bad_refusals, report.search_violations) == (0, 0)
    assert report.acknowledged > PROCESSES * OPERATIONS / 2 and report.conflicts > 0
    assert report.live_checked > 0 and report.deleted_checked > 0
    assert report.doctor == "healthy"


def ledger_of(ops: list[Op], items: dict[str, ItemState]) -> LedgerSnapshot:
    return LedgerSnapshot(integrity="ok", items=items, ops=ops)


def test_the_checks_catch_lost_duplicated_and_unexplained_writes() -> None:
    """The soak's own checks fail when they should (so a green soak means something)."""
    shared = Shared(
        acks=[Ack(0, "insert", "s-aaaaaa", 1, "a sk0x1"), Ack(1, "update", "s-aaaaaa", 2, "b sk1x1")],
        refusals=[Refusal(0, "update", "s-aaaaaa", 1, 2, "b sk1x1")],  # client 1 wrote version 2: real
    )
    ops = [Op(1, "insert", "s-aaaaaa", 1, "a sk0x1"), Op(2, "update", "s-aaaaaa", 2, "b sk1x1")]
    items = {"s-aaaaaa": ItemState(2, "b sk1x1", False)}
    report = SoakReport()
    check_log(shared, ledger_of(ops, items), report)
    check_final_state(shared, ledger_of(ops, items), report)
    check_refusals(shared, report)
    assert (report.lost, report.duplicates, report.unexpected, report.wrong_final, report.bad_refusals) == (0,) * 5

    report = SoakReport()
    check_log(shared, ledger_of(ops[:1], items), report)  # the acknowledged update is not logged
    assert report.lost == 1
    report = SoakReport()
    twice = [*ops, Op(3, "insert", "s-bbbbbb", 1, "a sk0x1")]  # one insert applied twice
    check_log(shared, ledger_of(twice, items), report)
    assert report.duplicates == 1 and report.unexpected == 1
    report = SoakReport()
    check_final_state(shared, ledger_of(ops, {"s-aaaaaa": ItemState(1, "a sk0x1", False)}), report)
    assert report.wrong_final == 1
    report = SoakReport()
    own = Shared(acks=shared.acks, refusals=[Refusal(1, "update", "s-aaaaaa", 1, 2, "b sk1x1")])
    check_refusals(own, report)  # refused by a version the same client wrote: not a real conflict
    assert report.bad_refusals == 1


class _Refusing:
    """An MCP client whose every call is refused with `text` (as the server's error result)."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def call_tool(self, tool: str, arguments: dict[str, object]) -> object:
        refusal = SimpleNamespace(text=f"Error executing tool {tool}: {self.text}")
        return SimpleNamespace(is_error=True, content=[refusal])


@pytest.mark.anyio
async def test_a_full_queue_is_counted_as_back_pressure_and_any_other_memorize_refusal_is_a_problem() -> None:
    from mcp_memalpha.errors import QueueFull

    shared = Shared(memorize_share=1.0)
    await Driver(0, _Refusing(str(QueueFull("curated", 100))), shared, random.Random(0)).memorize()
    assert (shared.queue_full, shared.anomalies, shared.jobs) == (1, [], [])
    await Driver(1, _Refusing("chunk: the chunk is empty"), shared, random.Random(0)).memorize()
    assert shared.queue_full == 1 and len(shared.anomalies) == 1
