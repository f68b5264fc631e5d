"""Query expansion: near-synonyms and misspellings, for the full-text half of a search.

BM25 finds only the words a memory uses; a question asks in its own ("what is my profession?"
against "I work as a nurse"). Two cheap signals widen the full-text query without a model call:

- **near-synonyms** from the static embedding's own word table: each content word of the query
  that is a whole word of the model's vocabulary brings its nearest other words ("profession" ->
  occupation, career), added with a small weight so the words asked for still lead;
- **misspellings**: a query word the vocabulary does not know ("bycicle") is also matched fuzzily
  (edit distance 1-2) against the index's terms.

Figures and the choice of constants: docs/retrieval.md ("Meaning, not only words").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_memalpha.query import STOP_WORDS

if TYPE_CHECKING:
    import numpy as np

# Per content word: at most this many neighbours, each at least this similar (cosine in the
# static model's space), added with weight SYNONYM_WEIGHT x similarity.
NEIGHBOURS = 3
MIN_SIMILARITY = 0.6
SYNONYM_WEIGHT = 0.15
# Unknown words at least this long are matched fuzzily, with this weight (the exact word is
# still searched at weight 1: names the vocabulary lacks are found as they are).
MIN_FUZZY_LENGTH = 4
FUZZY_WEIGHT = 0.5
MAX_QUERY_WORDS = 40  # a passage (the curator's chunk) is searched as it is
_WORD = re.compile(r"[A-Za-z]+")
_TABLE_WORD = re.compile(r"[a-z]{3,}")
# Word pieces of contractions ("didn" of "didn't"): whole tokens of the vocabulary, but no words.
_CONTRACTIONS = frozenset(["didn", "doesn", "don", "isn", "wasn", "aren", "weren", "hasn", "haven", "hadn", "won"])


@dataclass(frozen=True)
class Expansion:
    """What to add to a query's full-text search: weighted extra terms, and words to match fuzzily."""

    terms: tuple[tuple[str, float], ...] = ()
    fuzzy: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.terms or self.fuzzy)


NEIGHBOURS_FILE = "neighbours.tsv"  # beside the model: built by scripts/build_neighbours.py


class Synonyms:
    """The static model's whole words, each with its nearest other words (precomputed, so a
    query pays a dictionary look-up, not a scan of the 21k-word table). Each word's neighbours
    stay as their line of the file until a query asks for them: all 21k parsed up front held
    15 MB in every server process, the lines hold 5 MB."""

    def __init__(self, lines: dict[str, str]) -> None:
        self._lines = lines  # word -> "other:similarity other:similarity ...", nearest first

    @classmethod
    def load(cls, path: Path) -> Synonyms:
        lines: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            word, _, rest = line.partition("\t")
            lines[word] = rest
        return cls(lines)

    def knows(self, word: str) -> bool:
        return word in self._lines

    def of(self, word: str) -> tuple[tuple[str, float], ...]:
        """At most NEIGHBOURS of the word's nearest words at MIN_SIMILARITY or more."""
        pairs = [pair.rsplit(":", 1) for pair in self._lines.get(word, "").split()[:NEIGHBOURS]]
        return tuple((other, float(sim)) for other, sim in pairs if float(sim) >= MIN_SIMILARITY)


def table_words(vocab: dict[str, int]) -> list[tuple[str, int]]:
    """The vocabulary entries that are whole words worth expanding (no word pieces, no stop words)."""
    return sorted((w, i) for w, i in vocab.items() if _TABLE_WORD.fullmatch(w) and w not in STOP_WORDS | _CONTRACTIONS)


def nearest_words(words: list[str], vectors: np.ndarray, keep: int, floor: float) -> list[list[tuple[str, float]]]:
    """For each word, its `keep` nearest other words at cosine `floor` or more, skipping its own
    inflections and each other's (same stem or first four letters: "professions" for "profession",
    "lives" for "living"; the full-text index's stemming already has those)."""
    import numpy as np

    unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)
    found: list[list[tuple[str, float]]] = []
    for start in range(0, len(words), 1024):
        sims = unit[start : start + 1024] @ unit.T
        for row, word in zip(sims, words[start : start + 1024], strict=False):
            chosen: list[tuple[str, float]] = []
            stems, prefixes = {_stem(word)}, [word[:4]]
            for n in np.argsort(-row)[: 16 * keep]:
                other, sim = words[int(n)], float(row[int(n)])
                if sim < floor or len(chosen) == keep:
                    break
                if _stem(other) not in stems and not any(other.startswith(p) for p in prefixes):
                    chosen.append((other, round(sim, 3)))
                    stems.add(_stem(other))
                    prefixes.append(other[:4])
            found.append(chosen)
    return found


def expand(query: str, table: Synonyms) -> Expansion:
    """Near-synonyms of the query's content words and its unknown words, for the full-text search."""
    words = [w.lower() for w in _WORD.findall(query)]
    if len(words) > MAX_QUERY_WORDS:
        return Expansion()
    content = list(dict.fromkeys(w for w in words if w not in STOP_WORDS and len(w) > 2))
    fuzzy = tuple(_stem(w) for w in content if len(w) >= MIN_FUZZY_LENGTH and not table.knows(w))
    asked = set(content)
    terms: dict[str, float] = {}
    for word in content:
        for other, sim in table.of(word):
            if other not in asked:
                terms[other] = max(terms.get(other, 0.0), round(SYNONYM_WEIGHT * sim, 3))
    return Expansion(tuple(sorted(terms.items())), fuzzy)


def _stem(word: str) -> str:
    """The English Snowball stem, as the full-text index stores its terms: a fuzzy match is made
    against those ("bycicle" -> "bycicl", two edits from "bicycl")."""
    return _stemmer().stemWord(word)


_STEMMER: Any = None


def _stemmer() -> Any:
    global _STEMMER
    if _STEMMER is None:
        import snowballstemmer

        _STEMMER = snowballstemmer.stemmer("english")
    return _STEMMER
