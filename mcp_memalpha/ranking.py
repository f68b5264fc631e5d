"""Ranking math: fusing BM25 and vector candidates, and the rankings of a query's parts.

Pure functions over (id, score) lists; `Memory` decides what to rank, this how to combine."""

from __future__ import annotations

import math

# Hybrid search: BM25 scores scaled by the best one, plus this weight times the cosine
# similarity standardised over the vector pool. The static embedding is weaker than BM25 on
# exact facts, so it breaks ties and rescues paraphrases rather than leading (docs/retrieval.md).
VECTOR_WEIGHT = 0.1
VECTOR_POOL = 100

Ranking = list[tuple[str, float]]


def by_score(ranked: Ranking) -> Ranking:
    return sorted(ranked, key=lambda pair: (-pair[1], pair[0]))


def hybrid_fusion(text: Ranking, vector: Ranking, weight: float = VECTOR_WEIGHT) -> Ranking:
    """BM25 / best BM25 + weight * z-scored cosine; ties broken by id so results are deterministic.

    Items the vector search did not return get the pool's lowest z-score.
    """
    scores: dict[str, float] = {}
    best = max((score for _, score in text), default=0.0)
    for item_id, score in text:
        scores[item_id] = score / best if best > 0 else 0.0
    if vector:
        sims = [sim for _, sim in vector]
        mean = sum(sims) / len(sims)
        spread = math.sqrt(sum((s - mean) ** 2 for s in sims) / len(sims)) or 1.0
        z = {item_id: (sim - mean) / spread for item_id, sim in vector}
        floor = min(z.values())
        for item_id in scores.keys() | z.keys():
            scores[item_id] = scores.get(item_id, 0.0) + weight * z.get(item_id, floor)
    return by_score(list(scores.items()))


def fuse_parts(rankings: list[Ranking]) -> Ranking:
    """One ranking from the rankings of a query's parts: each item scored by its best score
    relative to the top of its part's ranking, so every part's best results lead together."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        if not ranking:
            continue
        top = max(score for _, score in ranking)
        for item_id, score in ranking:
            relative = score / top if top > 0 else score - top
            scores[item_id] = max(relative, scores.get(item_id, -math.inf))
    return by_score(list(scores.items()))
