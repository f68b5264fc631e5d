"""Re-ranking the head of a ranking by what its memories say, once their contents are read.

Two priors, not filters, each a share of the head's best score taken off (docs/retrieval.md):
- a memory that only asks ("What's the band?") holds no fact for the query it resembles: in
  conversations the other side's question repeats the words of the answer that follows it;
- when the query names whose words it is after, and memories carry a leading label with that
  name ("Caroline: ..."), the memories with another label come after those with it ("What
  career has Caroline chosen?" is answered by what Caroline said, seldom by her friend's reply).
Memories without a label (a fact written as such) are not moved by that, and a query naming no
label of the head moves none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcp_memalpha.excerpt import leading_label, split

QUESTION_PENALTY = 0.2
SPEAKER_PENALTY = 0.3
SHORT_WORDS = 6  # "Wow, what a fun moment!" beside a question asks all the same


def only_asks(content: str) -> bool:
    """Whether every sentence after the label is a question or a short interjection, one at least
    a question."""
    if "?" not in content:  # most memories: no sentence to split
        return False
    _, sentences = split(content)
    asks = [s.text.rstrip().endswith("?") for s in sentences]
    return any(asks) and all(a or len(s.text.split()) <= SHORT_WORDS for a, s in zip(asks, sentences, strict=True))


def label_of(content: str) -> str:
    """The leading label's name ("Caroline" of "Caroline: ..."), or "" when there is none or a
    later line has another (a passage of several speakers' turns is no one's words)."""
    label = leading_label(content)
    if "\n" in content and any(leading_label(line) not in ("", label) for line in content.splitlines()[1:]):
        return ""
    return label.removesuffix(": ")


def rerank(query: str, head: Sequence[tuple[str, float]]) -> list[tuple[int, float]]:
    """The indices of `head` ((content, score) pairs, best first) in their new order, with their
    new scores; equal scores keep their order."""
    if not head:
        return []
    scale = max(abs(score) for _, score in head) or 1.0
    labels = [label_of(content) for content, _ in head]
    named = {label for label in set(labels) if label and re.search(rf"(?<!\w){re.escape(label)}(?!\w)", query)}
    scored = []
    for index, (content, score) in enumerate(head):
        if only_asks(content):
            score -= QUESTION_PENALTY * scale
        if named and labels[index] and labels[index] not in named:
            score -= SPEAKER_PENALTY * scale
        scored.append((index, score))
    return sorted(scored, key=lambda pair: -pair[1])
