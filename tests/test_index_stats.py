"""Full-text statistics per namespace (issue 16 #2): another namespace's writes cannot be seen
in one's own BM25 scores; with one namespace the scores are LanceDB's own.

Each isolation test runs twice: with the other namespace's rows just synced (LanceDB searches
rows newer than its full-text index flat, so their words may not yet count) and after the index
is compacted, which folds them into the full-text index (every OPTIMIZE_EVERY commits, or a
rebuild). Only the second showed the leak on LanceDB's own statistics."""

from __future__ import annotations

import pytest

from mcp_memalpha import CallContext, Memory
from mcp_memalpha.expansion import Expansion
from mcp_memalpha.store.index import Filter, _clauses, _fts_query

MINE = [
    "Ana keeps a quokka named Biscuit in the garden",
    "Ana repaired the garden fence on Sunday",
    "The quokka ate the lettuce Ana planted",
    "Ana's brother visited and admired the fence",
]
QUERIES = ["quokka garden", "fence", "lettuce quokka brother"]


def bm25(memory: Memory, namespace: str, query: str, compact: bool = False) -> dict[str, float]:
    """Each hit's score (a dict: ties may come in any order), after syncing and maybe compacting."""
    memory.index.sync(memory.ledger)
    if compact:
        memory.index._optimize(memory.index._table_for_query())
    return dict(memory.index.text_search(query, Filter(namespace, ("episodic", "semantic")), 50))


@pytest.mark.parametrize("compact", [False, True], ids=["synced", "compacted"])
def test_scores_do_not_change_when_another_namespace_writes_the_same_words(memory: Memory, compact: bool) -> None:
    mine, theirs = CallContext(namespace="mine"), CallContext(namespace="theirs")
    for text in MINE:
        memory.insert(mine, "semantic", text)
    memory.insert(theirs, "semantic", "an unrelated note about tax forms")
    before = {query: bm25(memory, "mine", query, compact) for query in QUERIES}
    assert all(before.values())
    for i in range(5):  # the other tenant writes the rare words, often
        memory.insert(theirs, "semantic", f"quokka quokka garden fence lettuce brother note {i}")
    after = {query: bm25(memory, "mine", query, compact) for query in QUERIES}
    assert after == before
    assert bm25(memory, "theirs", "quokka")  # their memories are found in their namespace


@pytest.mark.parametrize("compact", [False, True], ids=["synced", "compacted"])
def test_scores_do_not_change_when_another_namespace_deletes(memory: Memory, compact: bool) -> None:
    mine, theirs = CallContext(namespace="mine"), CallContext(namespace="theirs")
    for text in MINE:
        memory.insert(mine, "semantic", text)
    other = [memory.insert(theirs, "semantic", f"quokka fence number {i}") for i in range(3)]
    before = bm25(memory, "mine", "quokka fence", compact)
    for item in other:
        memory.delete(theirs, "semantic", item.id)
    assert bm25(memory, "mine", "quokka fence", compact) == before


def test_with_one_namespace_the_scores_are_lancedbs(memory: Memory) -> None:
    ctx = CallContext()
    for text in MINE:
        memory.insert(ctx, "semantic", text)
    memory.insert(ctx, "episodic", "Ana and her quokka went to the fence market", "2024-05-01")
    memory.insert(ctx, "semantic", "Ana is learning Portuguese on the train")
    # Fuzzy stems as the expansion makes them: "portuges" would stem again (to "portug", three
    # edits from the index's "portugues"); "plnat" is two edits from "plant" (a swap counts two).
    expansion = Expansion(terms=(("yard", 0.3),), fuzzy=("quoka", "lettuse", "plnat", "portuges"))
    memory.index.sync(memory.ledger)
    for query, wider in [("quokka garden", None), ("fence market Ana", None), ("quoka in the yard", expansion)]:
        clauses = _clauses(query, wider)
        table = memory.index._table_for_query()
        native = table.search(_fts_query(clauses), query_type="fts").limit(50).select(["id", "_score"]).to_list()
        ours = dict(memory.index.text_search(query, Filter("default", ("episodic", "semantic")), 50, wider))
        assert native
        assert {row["id"]: round(row["_score"], 4) for row in native} == {k: round(v, 4) for k, v in ours.items()}
