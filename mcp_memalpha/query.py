"""How a search query is read: its parts, and its content words.

A question about two people ("What do Jon and Gina both like?") has evidence in what each of
them said, and one ranking of the whole question tends to fill up with one of them. Searching
each part and fusing the rankings gives every part its own best results (docs/retrieval.md).
"""

from __future__ import annotations

import re

MAX_PARTS = 4  # each part is a search of its own: a query of many questions is searched whole
# Longer text is a passage (the curator searches with a conversation chunk), not a question.
MAX_QUESTION_WORDS = 40
_QUESTION = re.compile(r"(?<=\?)\s+(?=\S)")
# Two capitalised words joined by "and", the first not opening the query: two names.
_NAMES = re.compile(r"(?<=\s)(?:both\s+)?([A-Z][\w'-]*)\s+and\s+([A-Z][\w'-]*)\b")
_BOTH = re.compile(r"\s+both\b")
_WORD = re.compile(r"\w+")
STOP_WORDS = frozenset(
    _WORD.findall(
        "a an the and or but of to in on at for from by with as about into is are was were be been being "
        "do does did doing have has had having will would can could should may might must shall "
        "i me my we our you your he him his she her it its they them their this that these those "
        "what when where who whom which why how there here not no so if than then too very just"
    )
)


def query_parts(query: str) -> list[str]:
    """The separate questions in `query`: several questions, or one question asked of two names
    ("When did Jon and Gina meet?" -> "When did Jon meet?", "When did Gina meet?"). One part when
    there is nothing to split, more than MAX_PARTS, or the query is a passage rather than questions."""
    if len(query.split()) > MAX_QUESTION_WORDS:
        return [query]
    questions = [q for q in _QUESTION.split(query.strip()) if q]
    if len(questions) > 1:
        return questions if len(questions) <= MAX_PARTS else [query]
    match = _NAMES.search(query)
    if match is None:
        return [query]
    whole = match.group(0)
    return [_BOTH.sub("", query.replace(whole, name, 1)) for name in match.groups()]


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning, cut to five letters so that "paint", "painted" and
    "painting" match (a crude stem; enough to pick sentences, not to rank)."""
    return {word[:5] for word in _WORD.findall(text.lower()) if word not in STOP_WORDS}
