"""How good a search's best match is, on a scale that means the same for every query.

The ranking's scores are relative (BM25 divided by the best of the query), so the top result
always scores about 1, even for random words. A client that must say "I don't know" needs an
absolute signal, one that means the same for a one-line fact and a long conversation turn. For
each hit, two measures that do not grow with the memory's length:
- `coverage`: the share of the query's content words the memory holds, a word counting whole
  when the memory has it (same crude stem) and in part when it has a near-synonym (the static
  model's word vectors: "scared" / "afraid", "vehicle" / "car");
- the cosine of the query's and the memory's embeddings.
Time words ("last week", "in May") are taken out of the query first: the ranking's time prior
serves them, and no memory's text says "yesterday". The blend, `match_score` (0 to 1), reads as
`strong`, `weak` or `none` by thresholds calibrated on the everyday suite and LoCoMo dev
(`benchmarks/match_calibration.py`, figures in docs/retrieval.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Literal

from mcp_memalpha.query import STOP_WORDS
from mcp_memalpha.timewords import find_in_query

if TYPE_CHECKING:
    import numpy as np

    Embed = Callable[[list[str]], np.ndarray]

MatchLevel = Literal["strong", "weak", "none"]

# From benchmarks/match_calibration.py: the weak threshold chosen on the everyday suite, the strong
# one on LoCoMo dev's no-answer queries, each checked on the other set (docs/retrieval.md).
COVERAGE_WEIGHT = 0.3
STRONG_AT = 0.47
WEAK_AT = 0.37
# A query word the memory lacks counts by its nearest word there: cosines of the static model's
# word vectors up to NEAR_FROM are what unrelated words reach; from NEAR_FULL a near-synonym counts
# whole (words per memory compared at most NEAR_WORDS, so a long one costs no more than a turn).
NEAR_FROM = 0.3
NEAR_FULL = 0.7
NEAR_WORDS = 300

_WORD = re.compile(r"\w+")
_ANY_DAY = datetime(2000, 1, 1)  # only the phrase is used, and reading it does not depend on the day


def match_scores(query: str, texts: list[str], embed: Embed, inside: list[bool] | None = None) -> list[float]:
    """Each text's match score against the query (0 to 1), from one call to `embed`: the query,
    the texts, and the words that near-synonyms are looked for among (none when a text holds
    every word asked for). `inside`, when the query names a time range: whether each text's
    memory is of that time, which counts as one more word asked for ("What did I do yesterday?")."""
    if not texts:
        return []
    asked = without_time(query)
    wanted = words(asked)
    held = [words(text) for text in texts]
    searched = [found[:NEAR_WORDS] for found in held if lacking(wanted, found)]
    vocabulary = list(dict.fromkeys(chain(wanted, *searched))) if searched else []
    vectors = embed([asked, *texts, *vocabulary])
    cosines = vectors[1 : len(texts) + 1] @ vectors[0]
    word_vectors = dict(zip(vocabulary, vectors[len(texts) + 1 :], strict=True))
    covered = [coverage(wanted, found, word_vectors) for found in held]
    if inside is not None:
        covered = [(share * len(wanted) + now) / (len(wanted) + 1) for share, now in zip(covered, inside, strict=True)]
    return [round(match_score(share, float(cos)), 4) for share, cos in zip(covered, cosines, strict=True)]


def without_time(query: str) -> str:
    """The query without the first time expression it speaks of ("last week", "in May")."""
    span = find_in_query(query, _ANY_DAY)
    if span is None:
        return query
    return re.sub(re.escape(span.phrase), " ", query, count=1, flags=re.IGNORECASE)


def words(text: str) -> list[str]:
    """Distinct lower-cased content words (no stop words, no lone letters as in "Dana's"), in order."""
    found = (word for word in _WORD.findall(text.lower()) if word not in STOP_WORDS and len(word) > 1)
    return list(dict.fromkeys(found))


def coverage(wanted: list[str], held: list[str], vectors: Mapping[str, np.ndarray]) -> float:
    """Share of the `wanted` words that `held` contains: 1 for the same stem, else the cosine of
    the closest of its first NEAR_WORDS words, ramped from NEAR_FROM (0) to NEAR_FULL (1).
    `vectors` holds the word vectors (unit length) of those and of the wanted words it lacks."""
    if not wanted:
        return 0.0
    missing = lacking(wanted, held)
    near = held[:NEAR_WORDS]
    if not missing or not near:
        return 1 - len(missing) / len(wanted)
    import numpy as np

    closest = (np.array([vectors[w] for w in near]) @ np.array([vectors[w] for w in missing]).T).max(axis=0)
    partial = np.clip((closest - NEAR_FROM) / (NEAR_FULL - NEAR_FROM), 0.0, 1.0)
    return (len(wanted) - len(missing) + float(partial.sum())) / len(wanted)


def lacking(wanted: list[str], held: list[str]) -> list[str]:
    """The wanted words whose stem `held` lacks."""
    stems = {_stem(word) for word in held}
    return [word for word in wanted if _stem(word) not in stems]


def _stem(word: str) -> str:
    """Five letters, without a plural 's': "works" = "work", "painted" = "paint" (crude, enough here)."""
    return word[:5].removesuffix("s")


def match_score(covered: float, cosine: float) -> float:
    """Coverage and cosine (clipped at 0) blended into 0..1."""
    return COVERAGE_WEIGHT * covered + (1 - COVERAGE_WEIGHT) * max(0.0, min(1.0, cosine))


def match_level(best: float | None) -> MatchLevel:
    if best is None or best < WEAK_AT:
        return "none"
    return "strong" if best >= STRONG_AT else "weak"
