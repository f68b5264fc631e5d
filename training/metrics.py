"""QA metrics per data source, as the Mem-α paper and LoCoMo score them.

- SubEM (SQuAD, HotpotQA, PerLTQA, RULER, ...): the gold answer, lowercased, is a substring of the
  prediction; a gold made of `;`-separated parts scores the share of parts found.
- Boxed-digit exact match (test-time-learning classification sets): the number inside the last
  `\\boxed{...}` of the prediction equals the gold label.
- Keyword-hit ratio (BookSum, InfBench-Sum): share of the gold keywords found in the prediction.
- LoCoMo token F1: LoCoMo's normalization (lowercase, punctuation, articles and 'and' dropped) and
  Porter stemming; category 1 (multi-hop) golds are split on commas and the best F1 of each part
  averaged; category 3 golds keep the part before the first ';'.

A prediction from the LLM-free reader is retrieved memory text, not an answer. Metrics that punish
extra words (F1, exact match) would score any retrieved context near zero whatever it holds, so in
`extractive` mode they become answer-token recall (the share of gold tokens present), the measure
`mcp-memalpha eval-retrieval` reports; SubEM and keyword hits are recall-type already and stay.
LongMemEval is judged by an LLM rubric in the paper; without one we score it with SubEM.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from mcp_memalpha.training.data import QA

from mcp_memalpha.answer_metrics import answer_token_recall

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_NUMBER = re.compile(r"-?\d+")
_LOCOMO_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def sub_em(prediction: str, gold: str) -> float:
    """Share of the `;`-separated gold parts that occur, lowercased, in the prediction."""
    parts = [part.strip().lower() for part in str(gold).split(";") if part.strip()]
    if not parts:
        return 0.0
    text = prediction.lower()
    return sum(part in text for part in parts) / len(parts)


def boxed_label(prediction: str) -> str | None:
    """The integer inside the last `\\boxed{...}`, or None when there is none."""
    boxes = _BOXED.findall(prediction)
    if not boxes:
        return None
    number = _NUMBER.search(boxes[-1])
    return number.group(0).lstrip("0") or "0" if number else None


def boxed_em(prediction: str, gold: str) -> float:
    """1.0 when the boxed number equals the gold label (leading zeros ignored)."""
    label = boxed_label(prediction)
    expected = _NUMBER.search(str(gold))
    if label is None or expected is None:
        return 0.0
    return float(label == (expected.group(0).lstrip("0") or "0"))


def keywords(gold: str | list[str]) -> list[str]:
    """Gold keywords: a list as given, or a string split on ';' (else ',')."""
    if isinstance(gold, list):
        return [str(k).strip().lower() for k in gold if str(k).strip()]
    separator = ";" if ";" in gold else ","
    return [k.strip().lower() for k in gold.split(separator) if k.strip()]


def keyword_hit(prediction: str, gold: str | list[str]) -> float:
    """Share of the gold keywords that occur, lowercased, in the prediction."""
    wanted = keywords(gold)
    if not wanted:
        return 0.0
    text = prediction.lower()
    return sum(k in text for k in wanted) / len(wanted)


@functools.cache
def _stemmer() -> Callable[[str], str]:
    # LoCoMo stems with NLTK's Porter stemmer; snowballstemmer's "porter" is the original Porter
    # algorithm (pure Python, 300 kB) and agrees with it on the words LoCoMo answers use.
    import snowballstemmer

    return snowballstemmer.stemmer("porter").stemWord


def locomo_normalize(text: str) -> str:
    """LoCoMo's normalize_answer: no commas, lowercase, no punctuation, no a/an/the/and."""
    text = str(text).replace(",", "").lower().translate(_PUNCTUATION)
    return " ".join(_LOCOMO_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """Token F1 after LoCoMo normalization and Porter stemming."""
    stem = _stemmer()
    predicted = [stem(w) for w in locomo_normalize(prediction).split()]
    expected = [stem(w) for w in locomo_normalize(gold).split()]
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def locomo_f1(prediction: str, gold: str, category: int | None = None) -> float:
    """LoCoMo's QA score for categories 1-4 (category 5 is not scored here)."""
    gold = str(gold)
    if category == 3:
        gold = gold.split(";")[0].strip()
    if category == 1:
        predictions = [p.strip() for p in prediction.split(",")]
        parts = [g.strip() for g in gold.split(",")]
        return sum(max(token_f1(p, g) for p in predictions) for g in parts) / len(parts)
    return token_f1(prediction, gold)


@dataclass(frozen=True)
class Metric:
    """How one data source's answers are scored: `score(prediction, qa)` in [0, 1]."""

    name: str
    score: Callable[[str, QA], float]


SUBEM = Metric("subem", lambda prediction, qa: sub_em(prediction, qa.answer))
BOXED = Metric("boxed_em", lambda prediction, qa: boxed_em(prediction, qa.answer))
KEYWORDS = Metric("keyword_hit", lambda prediction, qa: keyword_hit(prediction, qa.answer))
LOCOMO_F1 = Metric("locomo_f1", lambda prediction, qa: locomo_f1(prediction, qa.answer, qa.category))
RECALL = Metric("answer_token_recall", lambda prediction, qa: answer_token_recall(qa.answer, prediction))

# Prefixes of data source names (lowercased, '-' read as '_') -> metric.
_SOURCES: tuple[tuple[tuple[str, ...], Metric], ...] = (
    (("squad", "hotpotqa", "perltqa", "ruler", "lme", "longmemeval"), SUBEM),
    (("trec", "nlu", "banking77", "clinic", "pubmed_rct", "ttl", "icl"), BOXED),
    (("booksum", "infbench_sum", "infbench"), KEYWORDS),
    (("locomo",), LOCOMO_F1),
)


def metric_for(data_source: str, *, extractive: bool = False) -> Metric:
    """The metric of a data source; unknown sources get SubEM. `extractive`: the prediction is
    retrieved context rather than an answer (see the module docstring)."""
    key = data_source.lower().replace("-", "_")
    chosen = next((metric for prefixes, metric in _SOURCES if key.startswith(prefixes)), SUBEM)
    if extractive and chosen in (LOCOMO_F1, BOXED):
        return RECALL
    return chosen
