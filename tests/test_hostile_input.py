"""Random and adversarial arguments for every tool: a clear error or a correct result, never a
crash, never a half-written change, and the ledger and index still agree afterwards."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_memalpha import CallContext, MemalphaError, Memory
from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.tools import TOOLS_BY_NAME, execute
from tests.conftest import BOTH_BACKENDS

pytestmark = BOTH_BACKENDS

NASTY_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            "'; DROP TABLE items; --",
            "namespace = 'x' OR 1=1",
            "id IN ('e-aaaaaa')",
            "\x00",
            "\ud800",
            "content:tea AND (",
            "*",
            "   ",
            "e-" + "z" * 40,
            "[e-7kq2mx]",
            "1:56 pm on 8 May, 2023",
            "9999-12-31T23:59:59-01:00",
            "x" * 10_000,
            "😀" * 50,
        ]
    ),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | NASTY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
MEMORY_TYPES = st.sampled_from(
    ["episodic", "semantic", "core", "episodic_memory", "Semantic", "diary", "", "core_memory"]
)


def arguments_for(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly well-shaped calls with hostile values, sometimes arbitrary keys and types."""
    fields = TOOLS_BY_NAME[name].args.model_fields
    shaped = {field: (MEMORY_TYPES if field == "memory_type" else NASTY_TEXT | JSON_VALUES) for field in fields}
    well_shaped = st.fixed_dictionaries({}, optional=shaped)
    arbitrary = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5)
    return st.one_of(well_shaped, well_shaped, arbitrary)


CALLS = st.sampled_from(sorted(TOOLS_BY_NAME)).flatmap(lambda name: st.tuples(st.just(name), arguments_for(name)))


def check_invariants(memory: Memory) -> None:
    if memory.ledger.backend == "sqlite":
        conn = sqlite3.connect(memory.settings.ledger_path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    # every item is exactly what its last logged operation made it
    with memory.ledger.read() as tx:
        drift = tx.sql(
            "SELECT COUNT(*) FROM items i JOIN ops o ON o.seq = (SELECT MAX(seq) FROM ops WHERE item_id = i.id) "
            "WHERE o.version != i.version"
        ).fetchone()[0]
    assert drift == 0
    memory.sync_index()
    assert memory.index.ids() == {item.id for item in memory.iter_items(None)}


def writes_so_far(memory: Memory) -> object:
    """Changes to compare before and after a call: SQLite counts every changed row; on PostgreSQL,
    what any write moves (the log's head, every version, the job table)."""
    if memory.ledger.backend == "sqlite":
        return memory.ledger.conn.total_changes  # type: ignore[attr-defined]
    with memory.ledger.read() as tx:
        return tx.sql(
            "SELECT (SELECT seq FROM ledger_head), (SELECT COUNT(*) FROM items), (SELECT SUM(version) FROM items), "
            "(SELECT SUM(version) FROM core), (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM ops)"
        ).fetchone()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(CALLS, min_size=1, max_size=6))
def test_every_tool_survives_hostile_arguments(memory: Memory, calls: list[tuple[str, dict[str, Any]]]) -> None:
    ctx = CallContext()
    seed = memory.insert(ctx, "semantic", "a seed fact about tea")
    for name, arguments in calls:
        if "memory_id" in arguments and arguments["memory_id"] == "seed":
            arguments = arguments | {"memory_id": seed.id}
        before = writes_so_far(memory)
        try:
            result = execute(memory, ctx, name, arguments)
        except MemalphaError as error:
            if isinstance(error, InvalidArgument):  # names the field: a real argument, or `arguments` itself
                assert error.field.split(".")[0] in {*TOOLS_BY_NAME[name].args.model_fields, "arguments"}, error
                assert str(error).startswith(f"{error.field}: "), error
            assert writes_so_far(memory) == before  # a refused call wrote nothing
        else:
            json.dumps(result)  # a result is plain JSON
    check_invariants(memory)
