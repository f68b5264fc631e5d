"""The paper's baselines, built in the same harness as a policy (same reader, same budget).

Each `build_*` memorizes an instance and returns a `Built`: the view the reader reads for a
question and how many tokens the method keeps. The scratch memories are `Sandbox`es, so RAG's
BM25 and the flat paragraph go through the same tools as everything else.
- long-context: no memory; the reader sees the last `budget` tokens of the raw input;
- RAG-top-k: the raw input cut into passages, all stored verbatim, BM25 top-k under the budget;
- flat memory (MemAgent style): one paragraph only (the core memory), rewritten after each chunk.
  LLM-free here: the paragraph keeps the statements that add the most words not yet in it, in
  the order they came, up to its capacity (a rewriting LLM would do better; this is the
  deterministic floor of "one paragraph").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from mcp_memalpha.policy.prompt import statements
from mcp_memalpha.training.data import Instance
from mcp_memalpha.training.reader import LongContextView, RagView, View, passages
from mcp_memalpha.training.sandbox import Sandbox

from mcp_memalpha.tokens import count_tokens

_WORDS = re.compile(r"[a-z0-9']+")
_STOP = frozenset(
    _WORDS.findall(
        "the a an and or but to of in on at for with from by is are was were be been it its this that these those "
        "i you he she we they me him her us them my your his our their what so just really too very yeah oh like "
        "have has had do did does not no yes can could would will should about that's i'm it's you're"
    )
)


@dataclass
class Built:
    view: View
    memory_tokens: int
    sandbox: Sandbox | None = None

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()


def build_long_context(instance: Instance, budget: int) -> Built:
    view = LongContextView(instance.chunks, budget=budget)
    return Built(view, count_tokens(view.context("")))


def build_rag(instance: Instance, budget: int, *, top_k: int = 20, passage_tokens: int = 100) -> Built:
    sandbox = Sandbox(source="import")
    for passage in passages(instance.chunks, max_tokens=passage_tokens):
        sandbox.call("new_memory_insert", {"memory_type": "semantic", "content": passage})
    return Built(RagView(sandbox, budget=budget, top_k=top_k), sandbox.memory_tokens(), sandbox)


def content_words(text: str) -> set[str]:
    return {w for w in _WORDS.findall(text.lower()) if w not in _STOP and len(w) > 2}


def flat_paragraph(previous: Sequence[str], chunk: str, capacity: int) -> list[str]:
    """The statements the paragraph keeps after `chunk`: greedily those adding the most new
    content words, within `capacity` tokens, then put back in arrival order."""
    from mcp_memalpha.training.environment import chunk_timestamp

    when = chunk_timestamp(chunk)
    fresh = [f"({when}) {s}" if when else s for s in statements(chunk)]
    pool = [*previous, *fresh]
    return [pool[i] for i in informative_choice(pool, capacity)]


def informative_choice(pool: Sequence[str], capacity: int, chosen: Sequence[int] = ()) -> list[int]:
    """Indices (in order) of `chosen` and then, greedily, the statements of `pool` adding the most
    content words not yet covered, while they fit in `capacity` tokens (counting `chosen`)."""
    words = [content_words(s) for s in pool]

    @cache
    def covered(picked: tuple[int, ...]) -> set[str]:
        return set().union(*(words[i] for i in picked))

    return greedy_choice(
        [count_tokens(s) for s in pool], capacity, lambda picked, i: len(words[i] - covered(picked)), chosen
    )


def greedy_choice(
    sizes: Sequence[int], capacity: int, gain: Callable[[tuple[int, ...], int], float], chosen: Sequence[int] = ()
) -> list[int]:
    """Indices (in order) of `chosen` and then, one at a time, the item of the highest positive
    `gain(picked so far, index)` (the first of equals) while it fits in `capacity` (counting
    `chosen`), until none adds anything."""
    picked = list(chosen)
    used = sum(sizes[i] for i in picked)
    while True:
        best, best_gain = -1, 0.0
        for index, size in enumerate(sizes):
            if index in picked or used + size > capacity:
                continue
            value = gain(tuple(picked), index)
            if value > best_gain + 1e-12:
                best, best_gain = index, value
        if best < 0:
            return sorted(picked)
        picked.append(best)
        used += sizes[best]


def build_flat(instance: Instance, budget: int) -> Built:
    from mcp_memalpha.training.reader import MemoryView

    sandbox = Sandbox(core_capacity_tokens=max(budget, 16))
    kept: list[str] = []
    for chunk in instance.chunks:
        # a little under capacity: the joined paragraph counts a few tokens more than its parts
        kept = flat_paragraph(kept, chunk, int(budget * 0.95))
        if kept:
            sandbox.call("memory_update", {"memory_type": "core", "new_content": " ".join(kept)})
    return Built(MemoryView(sandbox, budget=budget), sandbox.memory_tokens(), sandbox)
