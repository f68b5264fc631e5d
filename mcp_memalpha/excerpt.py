"""Excerpts: a long memory shown in a search result by its sentences that answer the query.

A search result is read by a model with a context budget; ten long memories shown whole cost
more than the question needs. A memory longer than the excerpt budget shows the sentences that
share the most content words with the query (meaning breaks ties), in their own order, with
"…" where text was left out. A leading label such as "Caroline: " is always kept, because who
said it is part of every sentence. `memory_get` returns the memory whole.

`render_hit` is how a memory then reads: its date, the text shown, and the relative dates in it
resolved against that date.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from mcp_memalpha.clock import human_date
from mcp_memalpha.query import content_words
from mcp_memalpha.store.ledger import ItemRow
from mcp_memalpha.timeparse import relative_dates
from mcp_memalpha.tokens import token_spans_many

ELLIPSIS = "…"
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n\s*")
_LABEL = re.compile(r"^[^\s:]+(?: [^\s:]+){0,2}: ")

# Similarity of each sentence to the query (cosine of embeddings), computed only when needed.
Similarity = Callable[[list[str]], Sequence[float]]

# The first hits of a ranking are the likeliest to hold the answer, so they get more of the room:
# on LoCoMo dev, twice the budget for the first 4 (36 tokens for the rest) read 0.750 of the answer
# tokens at 288 words, where 48 for every hit read 0.743 at 295 (docs/retrieval.md, "Excerpts").
LEAD_HITS = 4
LEAD_FACTOR = 2


def rank_budgets(count: int, budget: int) -> list[int]:
    """The excerpt budget of each of `count` hits in rank order: LEAD_FACTOR x `budget` for the
    first LEAD_HITS, `budget` after them."""
    return [budget * LEAD_FACTOR if rank < LEAD_HITS else budget for rank in range(count)]


def render_hit(item: ItemRow, shown: str | None = None) -> str:
    """How an item reads in a prompt or a token budget: its date, its content (or the excerpt of it
    `shown`), and the relative dates in that resolved against the date:
    `[8 May 2023] ... yesterday ... (yesterday = 7 May 2023)`."""
    return render_dated(item.content if shown is None else shown, item.event_time)


def render_dated(text: str, event_time: str | None) -> str:
    """`text` as it reads with its ISO-8601 `event_time` (see `render_hit`); as it is without one."""
    if not event_time:
        return text
    when = datetime.fromisoformat(event_time.removesuffix("Z"))
    notes = relative_dates(text, when)
    return f"[{human_date(when)}] {text}" + (f" ({'; '.join(notes)})" if notes else "")


def excerpts(contents: list[str], query: str, budgets: Sequence[int], similarity: Similarity) -> list[str | None]:
    """Each of `contents` cut to about its `budgets` entry in tokens of its most relevant
    sentences, or None where it fits whole. The best sentence is always kept (cut at a word if it
    alone is over budget: at least one whole word). One tokenizer pass and one similarity call
    serve all of them."""
    spans = token_spans_many(contents) if contents else []
    long = [i for i, tokens in enumerate(spans) if len(tokens) > budgets[i]]
    splits = {i: split(contents[i]) for i in long}
    closeness = iter(similarity([s.text for i in long for s in splits[i][1]]) if long else [])
    wanted = content_words(query)
    shown: list[str | None] = [None] * len(contents)
    for i in long:
        label, sentences = splits[i]
        near = [next(closeness) for _ in sentences]
        shown[i] = _excerpt(contents[i], label, sentences, near, spans[i], wanted, budgets[i])
    return shown


def excerpt(content: str, query: str, budget: int, similarity: Similarity) -> str | None:
    """One content's excerpt (see `excerpts`)."""
    return excerpts([content], query, [budget], similarity)[0]


@dataclass(frozen=True)
class _Sentence:
    start: int
    end: int
    text: str


def leading_label(content: str) -> str:
    """The leading label ("Caroline: "), or ""."""
    match = _LABEL.match(content)
    return match.group(0) if match else ""


def split(content: str) -> tuple[str, list[_Sentence]]:
    """The leading label ("Caroline: ", or "") and the sentences after it, with their places."""
    label = leading_label(content)
    sentences, start = [], len(label)
    for gap in [*_SENTENCE_END.finditer(content, len(label)), None]:
        end = gap.start() if gap else len(content)
        if end > start:
            sentences.append(_Sentence(start, end, content[start:end]))
        start = gap.end() if gap else end
    return label, sentences


def _excerpt(
    content: str,
    label: str,
    sentences: list[_Sentence],
    closeness: list[float],
    spans: list[tuple[int, int]],
    wanted: set[str],
    budget: int,
) -> str:
    starts = [start for start, _ in spans]
    sizes = [bisect_left(starts, s.end) - bisect_left(starts, s.start) for s in sentences]
    room = budget - bisect_left(starts, len(label))
    overlap = [len(content_words(s.text) & wanted) for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: (-overlap[i], -closeness[i], i))
    kept: list[int] = []
    used = 0
    for i in order:  # best first while they fit
        if kept and used + sizes[i] > max(room, 1):
            continue
        kept.append(i)
        used += sizes[i]
    kept.sort()
    if len(kept) == 1 and sizes[kept[0]] > room:  # one sentence over budget: its head
        first = sentences[kept[0]]
        last = min(bisect_left(starts, first.start) + max(room, 1), len(spans)) - 1
        cut = _cut(content, spans[last][1], first.start)
        return label + (ELLIPSIS + " " if kept[0] else "") + content[first.start : cut] + ELLIPSIS
    return label + _join([s.text for s in sentences], kept)


def _cut(content: str, end: int, start: int) -> int:
    """`end` moved to a word boundary: back to the last one after `start`, or, when the first word
    alone is longer, forward to its end (never half a word)."""
    if end >= len(content) or content[end].isspace():
        return end
    boundary = content.rfind(" ", start, end)
    if boundary > start:
        return boundary
    after = content.find(" ", end)
    return len(content) if after < 0 else after


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
