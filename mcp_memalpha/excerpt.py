"""Excerpts: a long memory shown in a search result by its sentences that answer the query.

A search result is read by a model with a context budget; ten long memories shown whole cost
more than the question needs. A memory longer than the excerpt budget shows the sentences that
share the most content words with the query (meaning breaks ties), in their own order, with
"…" where text was left out. A leading label such as "Caroline: " is always kept, because who
said it is part of every sentence. `memory_get` returns the memory whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from mcp_memalpha.query import content_words
from mcp_memalpha.tokens import count_many, count_tokens, head_tokens

ELLIPSIS = "…"
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n\s*")
_LABEL = re.compile(r"^[^\s:]+(?: [^\s:]+){0,2}: ")

# Similarity of each sentence to the query (cosine of embeddings), computed only when needed.
Similarity = Callable[[list[str]], Sequence[float]]


def excerpts(contents: list[str], query: str, budget: int, similarity: Similarity) -> list[str | None]:
    """Each of `contents` cut to about `budget` tokens of its most relevant sentences, or None
    where it fits whole. The best sentence is always kept (cut at a word if it alone is over
    budget). Tokens are counted, and sentences compared with the query, in one batch for all."""
    sizes = count_many(contents) if contents else []
    long = [i for i, size in enumerate(sizes) if size > budget]
    splits = {i: _split(contents[i]) for i in long}
    sentences = [s for i in long for s in splits[i][1]]
    sentence_sizes = count_many(sentences) if sentences else []
    closeness = list(similarity(sentences)) if sentences else []
    wanted = content_words(query)
    shown: list[str | None] = [None] * len(contents)
    offset = 0
    for i in long:
        label, parts = splits[i]
        span = slice(offset, offset + len(parts))
        offset += len(parts)
        shown[i] = _excerpt(label, parts, sentence_sizes[span], closeness[span], wanted, budget)
    return shown


def excerpt(content: str, query: str, budget: int, similarity: Similarity) -> str | None:
    """One content's excerpt (see `excerpts`)."""
    return excerpts([content], query, budget, similarity)[0]


def _split(content: str) -> tuple[str, list[str]]:
    """The leading label ("Caroline: ", or "") and the sentences after it."""
    match = _LABEL.match(content)
    label = match.group(0) if match else ""
    return label, [s for s in _SENTENCE_END.split(content[len(label) :]) if s]


def _excerpt(
    label: str, sentences: list[str], sizes: list[int], closeness: list[float], wanted: set[str], budget: int
) -> str:
    room = budget - count_tokens(label)
    if len(sentences) < 2 or room <= 0:
        return label + head_tokens(" ".join(sentences), max(room, 1)) + ELLIPSIS
    overlap = [len(content_words(s) & wanted) for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: (-overlap[i], -closeness[i], i))
    kept: list[int] = []
    used = 0
    for i in order:  # best first while they fit
        if kept and used + sizes[i] > room:
            continue
        kept.append(i)
        used += sizes[i]
    kept.sort()
    if len(kept) == 1 and sizes[kept[0]] > room:
        text = head_tokens(sentences[kept[0]], room) + ELLIPSIS
        return label + (ELLIPSIS + " " if kept[0] else "") + text
    return label + _join(sentences, kept)


def _join(sentences: list[str], kept: list[int]) -> str:
    parts: list[str] = []
    previous = -1
    for i in kept:
        if i != previous + 1:
            parts.append(ELLIPSIS)
        parts.append(sentences[i])
        previous = i
    if previous != len(sentences) - 1:
        parts.append(ELLIPSIS)
    return " ".join(parts)
