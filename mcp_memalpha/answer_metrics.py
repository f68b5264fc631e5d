"""LoCoMo's answer normalization and answer-token recall: shared by `eval-retrieval` (what the
retrieved text holds of the answer) and training's metrics (what a reader's answer holds)."""

from __future__ import annotations

import re

_PUNCT = re.compile(r"[^\w\s]")
_ARTICLES = {"a", "an", "the", "and"}


def answer_tokens(text: str) -> list[str]:
    """LoCoMo's normalization: lower case, punctuation dropped, articles and 'and' removed."""
    return [t for t in _PUNCT.sub(" ", str(text).lower()).split() if t not in _ARTICLES]


def answer_token_recall(answer: str, retrieved: str) -> float:
    gold = answer_tokens(answer)
    if not gold:
        return 0.0
    present = set(answer_tokens(retrieved))
    return sum(token in present for token in gold) / len(gold)
