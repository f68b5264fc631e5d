"""Core memory is bounded in characters as well as tokens: WordPiece counts any word of over 100
characters as one [UNK], so a token limit alone lets a core of millions of characters through."""

from __future__ import annotations

import pytest

from mcp_memalpha import CallContext, CapacityExceeded, Memory
from mcp_memalpha.tokens import count_tokens

LONG_WORDS = " ".join("x" * 150 for _ in range(200))  # 200 [UNK] tokens, 30,199 characters


def test_a_core_of_long_words_is_refused_by_its_characters(memory: Memory, ctx: CallContext) -> None:
    assert count_tokens(LONG_WORDS) == 200  # under the 512-token limit: tokens alone let it through
    memory.set_core(ctx, "Sam is a nurse in Leeds.")
    with pytest.raises(CapacityExceeded) as error:
        memory.set_core(ctx, LONG_WORDS)
    assert error.value.field == "new_content" and "characters" in str(error.value)
    assert error.value.size == len(LONG_WORDS) and error.value.limit == 512 * 8
    assert memory.core(ctx).content == "Sam is a nurse in Leeds."


def test_a_full_core_of_ordinary_prose_still_fits(memory: Memory, ctx: CallContext) -> None:
    prose = "Sam is a nurse in Leeds who likes long walks, strong coffee and old films. " * 30
    assert 480 < count_tokens(prose) <= 512
    assert memory.set_core(ctx, prose).content == prose.strip()


def test_an_import_meets_the_same_character_bound(memory: Memory) -> None:
    from mcp_memalpha.store.ledger import CoreRow
    from mcp_memalpha.transfer import CoreRecord, _core_row

    record = CoreRecord(
        record="core",
        namespace="default",
        content=LONG_WORDS,
        version=1,
        updated_at="2024-01-01T00:00:00Z",
        source="client",
    )
    with pytest.raises(CapacityExceeded, match="characters"):
        _core_row(record, memory)
    assert isinstance(_core_row(record.model_copy(update={"content": "Sam."}), memory), CoreRow)
