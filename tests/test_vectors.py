"""The in-memory vector copy: loads from the real LanceDB table, follows the ledger, filters right."""

from __future__ import annotations

import numpy as np

from mcp_memalpha import CallContext, Memory
from mcp_memalpha.store.vectors import VectorCache


def brute_force(memory: Memory, query: str, namespace: str) -> list[str]:
    items = [i for i in memory.iter_items(namespace)]
    sims = memory.embedder.embed([i.content for i in items]) @ memory.embedder.embed([query])[0]
    return [items[j].id for j in np.argsort(-sims)]


def test_cache_matches_brute_force_and_follows_writes(memory: Memory) -> None:
    home, work = CallContext(namespace="home"), CallContext(namespace="work")
    for i in range(60):
        memory.insert(
            home if i % 2 else work, "episodic" if i % 3 else "semantic", f"Note {i} about gardens and {i % 7}"
        )
    memory.sync_index()
    query = memory.embedder.embed(["garden notes"])[0]
    cache = memory.index._refresh_vectors(memory.ledger)
    top = [item_id for item_id, _ in cache.search(query, "home", ("episodic", "semantic"), None, None, 5)]
    assert top == brute_force(memory, "garden notes", "home")[:5]

    # writes made since are applied from the ledger: deleted ids vanish, updated ones move
    victim = top[0]
    memory.delete(home, memory.get(home, [victim])[0][0].memory_type, victim)
    fresh = memory.insert(home, "semantic", "garden notes")
    memory.sync_index()
    cache = memory.index._refresh_vectors(memory.ledger)
    after = [item_id for item_id, _ in cache.search(query, "home", ("episodic", "semantic"), None, None, 5)]
    assert after[0] == fresh.id and victim not in after


def test_filters_by_type_and_time(memory: Memory, ctx: CallContext) -> None:
    early = memory.insert(ctx, "episodic", "a walk in the park", "2023-01-01")
    late = memory.insert(ctx, "episodic", "a walk in the park again", "2023-06-01")
    undated = memory.insert(ctx, "episodic", "a walk in the park, undated")
    fact = memory.insert(ctx, "semantic", "parks are nice for walks")
    memory.sync_index()
    cache = memory.index._refresh_vectors(memory.ledger)
    q = memory.embedder.embed(["walk in the park"])[0]
    assert {i for i, _ in cache.search(q, "default", ("episodic",), None, None, 10)} == {early.id, late.id, undated.id}
    assert [i for i, _ in cache.search(q, "default", ("semantic",), None, None, 10)] == [fact.id]
    ranged = cache.search(q, "default", ("episodic",), early.event_ts + 1, None, 10)
    assert [i for i, _ in ranged] == [late.id]  # undated items never pass a time filter
    assert cache.search(q, "nowhere", ("episodic",), None, None, 10) == []


def test_compaction_keeps_only_live_rows() -> None:
    cache = VectorCache(dim=4)
    vectors = np.eye(4, dtype=np.float32)
    from mcp_memalpha.store.ledger import ItemRow

    def row(i: int) -> ItemRow:
        return ItemRow(f"s-{i:06d}", "default", "semantic", "x", None, None, "t", "t", 1, "client", None, None)

    cache.apply([], [row(i) for i in range(3000)], lambda texts: [vectors[i % 4] for i in range(len(texts))], seq=1)
    cache.apply([f"s-{i:06d}" for i in range(2000)], [], lambda texts: [], seq=2)
    assert cache._used < 3000  # compacted
    found = cache.search(vectors[1], "default", ("semantic",), None, None, 2000)
    assert len(found) == 1000 and all(int(i[2:]) >= 2000 for i, _ in found)
