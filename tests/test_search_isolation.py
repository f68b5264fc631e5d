"""Full-text statistics stay inside a namespace: what another namespace stores cannot change the
scores of one's own search, so scores cannot tell a tenant which words others' memories hold."""

from __future__ import annotations

import pytest

from mcp_memalpha import CallContext, Memory
from mcp_memalpha.store.index import Filter

MINE = CallContext(namespace="mine")
THEIRS = CallContext(namespace="theirs")
BOTH_TYPES = ("episodic", "semantic")


def scores(memory: Memory, query: str) -> list[tuple[str, float]]:
    """Scores once every row is in the full-text index (rows added since its last optimize are
    searched apart from it until the next one; a rebuild indexes them all)."""
    memory.index.rebuild(memory.ledger)
    return memory.index.text_search(query, Filter("mine", BOTH_TYPES), 10)


@pytest.mark.parametrize("query", ["zebra", "otter", "zebra otter stripes"])
def test_another_namespace_does_not_change_a_namespaces_bm25_scores(memory: Memory, query: str) -> None:
    for text in ("We saw a zebra at the zoo.", "An otter swam by.", "The zebra has stripes.", "Lunch was soup."):
        memory.insert(MINE, "semantic", text)
    before = scores(memory, query)
    assert before  # the query matches something of mine
    for i in range(5):  # another tenant writes the rare word, and much else
        memory.insert(THEIRS, "semantic", f"A zebra note {i} about zebra herds, stripes and savanna grass.")
    memory.insert(THEIRS, "episodic", "Nothing about animals at all, only a long text " + "filler " * 50)
    assert scores(memory, query) == before
    gone = memory.iter_items("theirs")
    for item in list(gone):
        memory.delete(THEIRS, item.memory_type, item.id)
    assert scores(memory, query) == before


def test_bm25_still_ranks_by_relevance(memory: Memory) -> None:
    rare = memory.insert(MINE, "semantic", "The okapi lives in the forest.")
    for i in range(6):
        memory.insert(MINE, "semantic", f"The forest note {i}.")
    hits = scores(memory, "okapi forest")
    assert hits[0][0] == rare.id and len(hits) == 7
    assert all(score > 0 for _, score in hits)
