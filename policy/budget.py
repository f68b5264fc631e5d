"""The curator's prompt fits its model's context by construction.

The context holds the prompt and the answer: the prompt may have `n_ctx - reserve` tokens, the
reserve being what the format may write (every step's answer). Of the prompt, the instructions and
tools are fixed; the chunk is split into parts that fit with nothing of the memory shown
(`split_chunk`); what is shown of the memory (core and the memories shown with it) gets the rest.
Only when the whole prompt is over does `fit_memory` cut those texts, to one cap in tokens per
text (short texts stay whole, the long ones are cut at the cap and marked), so a normal prompt
stays exactly as the format writes it (the Mem-α prompt as trained). Counts are the model's own
(llama.cpp's tokenizer), and the rendered prompt is counted again after each cut, so the pieces'
boundaries cannot push it over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mcp_memalpha.policy.calls import ToolDef
from mcp_memalpha.policy.prompt import ChunkContext

if TYPE_CHECKING:
    from mcp_memalpha.policy.formats import WireFormat

FIT_TRIES = 4  # recounts after a cut before nothing of the memory is shown


class Tokenizer(Protocol):
    def tokens(self, text: str) -> list[int]: ...

    def text_of(self, ids: Sequence[int]) -> str: ...


@dataclass(frozen=True)
class Budget:
    """At most `limit` tokens in the rendered prompt, as `count` counts rendered messages."""

    limit: int
    count: Callable[[list[dict[str, str]]], int]
    tokenizer: Tokenizer


class PromptTooLong(ValueError):
    """Even with nothing of the memory shown, the prompt is over its budget."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(
            f"prompt: {tokens} tokens with nothing of the memory shown, over the {limit} tokens the curator's "
            "context leaves for a prompt; give the curator a longer context or a smaller chunk"
        )


@dataclass(frozen=True)
class Cut:
    """What fitting did to one prompt: its tokens before and after, and the cap per shown text
    (None: nothing of the memory was shown)."""

    tokens_before: int
    tokens_after: int
    cap: int | None


def fit_memory(
    fmt: WireFormat, tools: Sequence[ToolDef], context: ChunkContext, budget: Budget
) -> tuple[ChunkContext, list[dict[str, str]], Cut | None]:
    """The context and messages of a prompt within `budget`: unchanged when they fit, else with the
    shown texts cut to the largest cap that fits; None as the cut when nothing was cut."""
    messages = fmt.messages(tools, context)
    total = budget.count(messages)
    if total <= budget.limit:
        return context, messages, None
    texts = fmt.shown(context)
    counts = [len(budget.tokenizer.tokens(text)) for text in texts]
    target = sum(counts) - (total - budget.limit)
    for _ in range(FIT_TRIES):
        cap = cap_for(counts, target, len(budget.tokenizer.tokens(fmt.cut_marker(max(counts, default=0)))))
        if cap is None:
            break
        cut = [cut_text(text, n, cap, budget.tokenizer, fmt.cut_marker) for text, n in zip(texts, counts, strict=True)]
        fitted = fmt.showing(context, cut)
        messages = fmt.messages(tools, fitted)
        tokens = budget.count(messages)
        if tokens <= budget.limit:
            return fitted, messages, Cut(total, tokens, cap)
        target -= tokens - budget.limit
    fitted = fmt.showing(context, None)
    messages = fmt.messages(tools, fitted)
    tokens = budget.count(messages)
    if tokens > budget.limit:
        raise PromptTooLong(tokens, budget.limit)
    return fitted, messages, Cut(total, tokens, None)


def cap_for(counts: Sequence[int], target: int, marker: int) -> int | None:
    """The largest cap c with sum(min(n, c + marker)) <= target: a text of n <= c + marker tokens
    stays whole, a longer one is cut to c tokens and the marker. None when even c = 0 is over."""
    if sum(min(n, marker) for n in counts) > target:
        return None
    low, high = 0, max(counts, default=0)
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(n, middle + marker) for n in counts) <= target:
            low = middle
        else:
            high = middle - 1
    return low


def cut_text(text: str, tokens: int, cap: int, tokenizer: Tokenizer, marker: Callable[[int], str]) -> str:
    """`text` (of `tokens` tokens) if cutting it to `cap` would not make it shorter, else its first
    `cap` tokens and the marker."""
    end = marker(cap)
    if tokens <= cap + len(tokenizer.tokens(end)):
        return text
    return tokenizer.text_of(tokenizer.tokens(text)[:cap]).rstrip() + end


def split_chunk(chunk: str, limit: int, tokenizer: Tokenizer) -> list[str]:
    """The chunk in parts of at most about `limit` tokens: whole lines together while they fit, a
    longer line in windows of `limit` tokens."""
    if limit < 1:
        raise ValueError(f"limit: {limit} tokens; a part needs at least one")
    parts: list[str] = []
    lines: list[str] = []
    size = 0
    for line in chunk.splitlines():
        n = len(tokenizer.tokens(line + "\n"))
        if lines and size + n > limit:
            parts.append("\n".join(lines))
            lines, size = [], 0
        if n <= limit:
            lines.append(line)
            size += n
            continue
        parts.extend(_windows(line, limit, tokenizer))
    if lines:
        parts.append("\n".join(lines))
    return [part for part in parts if part.strip()] or [chunk]


def _windows(line: str, limit: int, tokenizer: Tokenizer) -> list[str]:
    """A line of more than `limit` tokens, in consecutive pieces of at most `limit` tokens."""
    pieces = []
    rest = line
    while rest:
        ids = tokenizer.tokens(rest)
        if len(ids) <= limit:
            pieces.append(rest)
            break
        head = tokenizer.text_of(ids[:limit])
        if not head or not rest.startswith(head):  # a cut inside a character: go by characters instead
            head = rest[: max(1, len(rest) * limit // len(ids))]
        pieces.append(head)
        rest = rest[len(head) :]
    return pieces
