"""How good a search's best match is, on a scale that means the same for every query.

The ranking's scores are relative (BM25 divided by the best of the query), so the top result
always scores about 1, even for random words. A client that must say "I don't know" needs an
absolute signal: for each hit, the share of the query's content words it contains (`coverage`)
and the cosine of the query's and the memory's embeddings, combined into `match_score` (0 to 1)
and read as `strong`, `weak` or `none` by thresholds calibrated on LoCoMo
(`benchmarks/match_calibration.py`, figures in docs/retrieval.md).
"""

from __future__ import annotations

from typing import Literal

from mcp_memalpha.query import content_words

MatchLevel = Literal["strong", "weak", "none"]

# Weights and thresholds from benchmarks/match_calibration.py on the LoCoMo dev conversations.
COVERAGE_WEIGHT = 0.3
STRONG_AT = 0.52
WEAK_AT = 0.47


def coverage(query: str, text: str) -> float:
    """Share of the query's content words (crudely stemmed) that `text` contains; 0 for a query
    of stop words only."""
    wanted = _stems(query)
    return len(wanted & _stems(text)) / len(wanted) if wanted else 0.0


def _stems(text: str) -> set[str]:
    """`query.content_words` without a plural 's' ("works" = "work") or a lone letter ("Dana's")."""
    return {word.removesuffix("s") for word in content_words(text) if len(word) > 1}


def match_score(covered: float, cosine: float) -> float:
    """Coverage and cosine (clipped at 0) blended into 0..1."""
    return COVERAGE_WEIGHT * covered + (1 - COVERAGE_WEIGHT) * max(0.0, min(1.0, cosine))


def match_level(best: float | None) -> MatchLevel:
    if best is None or best < WEAK_AT:
        return "none"
    return "strong" if best >= STRONG_AT else "weak"
