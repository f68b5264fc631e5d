"""Insert reports near duplicates and can skip them; an updated memory never comes back in its old form."""

from __future__ import annotations

from typing import Any

from mcp_memalpha import CallContext, Memory
from mcp_memalpha.tools import execute


def test_insert_lists_nearly_the_same_and_never_merges(memory: Memory, ctx: CallContext) -> None:
    first = execute(memory, ctx, "new_memory_insert", {"memory_type": "semantic", "content": "Dana lives in Leeds."})
    assert first["similar"] == [] and first["hint"] is None
    again = execute(memory, ctx, "new_memory_insert", {"memory_type": "semantic", "content": "Dana lives in Leeds."})
    assert again["memory_id"] != first["memory_id"] and not again["skipped"]  # inserted: nothing silent
    assert [s["memory_id"] for s in again["similar"]] == [first["memory_id"]] and again["similar"][0]["score"] == 1.0
    assert "update instead?" in again["hint"]
    other = execute(memory, ctx, "new_memory_insert", {"memory_type": "semantic", "content": "Dana has a cat."})
    assert other["similar"] == []


def test_skip_a_duplicate(memory: Memory, ctx: CallContext) -> None:
    args = {"memory_type": "episodic", "content": "Ran 10 km along the canal.", "timestamp": "2026-11-02"}
    first = execute(memory, ctx, "new_memory_insert", args)
    memory.sync_index()  # the indexed (vector cache) path as well as the not-yet-indexed one
    skipped = execute(memory, ctx, "new_memory_insert", {**args, "on_duplicate": "skip"})
    assert skipped["skipped"] and skipped["memory_id"] == first["memory_id"] and "not inserted" in skipped["hint"]
    assert memory.list_items(ctx, "episodic").total == 1


def test_an_update_is_never_found_in_its_old_form(memory: Memory, ctx: CallContext) -> None:
    old = memory.insert(ctx, "semantic", "Dana lives in Leeds, on Harrow Road.")
    memory.insert(ctx, "semantic", "Dana works as a nurse.")
    memory.sync_index()
    moved = memory.update(ctx, "semantic", old.id, "Dana moved to Bristol, to Clifton.")
    # Right after the update, before anything caught the index up:
    found = execute(memory, ctx, "search_memory", {"query": "where does Dana live? Leeds Harrow Road"})
    texts = [hit["text"] for hit in found["results"]]
    assert "Dana lives in Leeds, on Harrow Road." not in texts
    hit = next(h for h in found["results"] if h["memory_id"] == old.id)
    assert hit["text"] == moved.content and hit["version"] == 2 and hit["updated_at"] == moved.updated_at
    assert hit["updated_at"] > hit["created_at"]


def test_the_duplicate_check_does_not_embed_this_process_s_fresh_memories_again(
    memory: Memory, ctx: CallContext
) -> None:
    """Memories inserted since the index last caught up are compared by the vectors computed at
    their insert: an insert embeds its own text, not every fresh memory again (speed, issue 13)."""
    for n in range(5):
        memory.insert_checked(ctx, "semantic", f"Fresh memory number {n} about the garden.")
    embedded: list[str] = []
    real = memory.embedder.embed

    def counting(texts: list[str]) -> Any:
        embedded.extend(texts)
        return real(texts)

    memory.embedder.embed = counting  # type: ignore[method-assign]
    outcome = memory.insert_checked(ctx, "semantic", "Fresh memory number 9 about the garden.")
    assert outcome.similar  # the fresh memories were compared
    assert all(text.endswith("9 about the garden.") for text in embedded), embedded
