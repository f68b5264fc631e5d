"""Full-text statistics per namespace: BM25 as if each namespace had an index of its own.

LanceDB's full-text index scores with statistics over all its rows (how many documents, their
average length, how many hold each term), so one namespace's scores would move when another
namespace writes, and a tenant could test whether a word occurs in memories it may not read.
The index still finds the candidates (pre-filtered by namespace); `TermStats.score` re-scores
them with the namespace's own statistics, kept beside the index in SQLite and written by the
same sync that writes the rows. With a single namespace the scores equal LanceDB's.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The full-text index's tokenizer (LanceDB's defaults, spelled out): the index is built with
# these options and `tokens()` splits text with them, so both see the same terms.
TOKENIZER: dict[str, Any] = {
    "base_tokenizer": "simple",
    "language": "English",
    "max_token_length": 40,
    "lower_case": True,
    "stem": True,
    "remove_stop_words": True,
    "ascii_folding": True,
}
# How LanceDB splits a fuzzy clause (measured, lancedb 0.40): into the same words, but neither
# lower-cased, stemmed, folded nor stripped of stop words. The expansion hands it stems, and
# Snowball is not idempotent ("portuges" -> "portug"), so stemming them again would miss terms
# the index matched ("portugues") and score a found memory 0.
FUZZY_TOKENIZER: dict[str, Any] = {
    **TOKENIZER,
    "lower_case": False,
    "stem": False,
    "remove_stop_words": False,
    "ascii_folding": False,
}
K1, B = 1.2, 0.75  # LanceDB's BM25 constants
_SCHEMA = """
CREATE TABLE docs (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, length INTEGER NOT NULL, terms TEXT NOT NULL);
CREATE TABLE df (namespace TEXT NOT NULL, term TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (namespace, term))
    WITHOUT ROWID;
CREATE TABLE totals (namespace TEXT PRIMARY KEY, docs INTEGER NOT NULL, tokens INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Clause:
    """One part of a full-text query: its words, their weight, and how fuzzily they match."""

    text: str
    boost: float = 1.0
    fuzziness: int = 0
    prefix_length: int = 0


def tokens(text: str, fuzzy: bool = False) -> list[str]:
    """The terms of `text` as the full-text index sees them (`fuzzy`: a fuzzy clause's words)."""
    from mcp_memalpha.store.lance import lancedb

    return [token.text for token in lancedb().tokenize(text, **(FUZZY_TOKENIZER if fuzzy else TOKENIZER))]


class TermStats:
    """Each indexed document's terms, and per namespace: documents, tokens, document frequency."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def create(cls, path: Path) -> TermStats:
        path.unlink(missing_ok=True)
        stats = cls.open(path, create=True)
        stats._db.executescript(_SCHEMA)
        return stats

    @classmethod
    def open(cls, path: Path, create: bool = False) -> TermStats:
        """The statistics at `path`; raises if they are missing (never starts empty by accident)."""
        mode = "rwc" if create else "rw"
        connection = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    def write(self, docs: Sequence[tuple[str, str, str]]) -> None:
        """Index (id, namespace, text) documents, replacing earlier versions: idempotent, so a
        sync repeated after a crash counts each document once."""
        fresh = {doc_id: (namespace, Counter(tokens(text))) for doc_id, namespace, text in docs}
        with self._db:
            delta = self._forget(list(fresh))
            for namespace, terms in fresh.values():
                _count(delta, namespace, terms, +1)
            self._db.executemany(
                "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?)",
                [(i, ns, sum(terms.values()), json.dumps(terms)) for i, (ns, terms) in fresh.items()],
            )
            self._apply(delta)

    def remove(self, ids: Sequence[str]) -> None:
        with self._db:
            self._apply(self._forget(ids))

    def _forget(self, ids: Sequence[str]) -> dict[tuple[str, str], int]:
        """Delete the documents' rows; returns the counts they took away."""
        delta: dict[tuple[str, str], int] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for namespace, terms in self._db.execute(f"SELECT namespace, terms FROM docs WHERE id IN ({marks})", chunk):
                _count(delta, namespace, Counter(json.loads(terms)), -1)
            self._db.execute(f"DELETE FROM docs WHERE id IN ({marks})", chunk)
        return delta

    def _apply(self, delta: dict[tuple[str, str], int]) -> None:
        """Add term-count changes; ('', namespace) and ('#', namespace) keys carry the totals."""
        totals: dict[str, list[int]] = {}
        terms: list[tuple[str, str, int]] = []
        for (namespace, term), change in delta.items():
            if term in ("", "#"):
                totals.setdefault(namespace, [0, 0])[term == "#"] += change
            elif change:
                terms.append((namespace, term, change))
        self._db.executemany("INSERT INTO df VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n", terms)
        self._db.executemany(
            "INSERT INTO totals VALUES (?, ?, ?) "
            "ON CONFLICT DO UPDATE SET docs = docs + excluded.docs, tokens = tokens + excluded.tokens",
            [(namespace, docs, length) for namespace, (docs, length) in totals.items()],
        )
        self._db.execute("DELETE FROM df WHERE n <= 0")

    def score(self, namespace: str, clauses: Sequence[Clause], ids: Iterable[str]) -> dict[str, float]:
        """BM25 of each candidate (ids of `namespace`) for the clauses, over that namespace alone:
        for each query term, boost x idf x saturated term frequency, summed (LanceDB's formula)."""
        ids = list(ids)
        marks = ", ".join("?" * len(ids))
        docs = {
            doc_id: (length, Counter(json.loads(terms)))
            for doc_id, length, terms in self._db.execute(
                f"SELECT id, length, terms FROM docs WHERE namespace = ? AND id IN ({marks})", [namespace, *ids]
            )
        }
        row = self._db.execute("SELECT docs, tokens FROM totals WHERE namespace = ?", [namespace]).fetchone()
        count, length_sum = row if row else (0, 0)
        query = [(clause, tokens(clause.text, fuzzy=clause.fuzziness > 0)) for clause in clauses]
        matched = {doc_id: _matches(query, terms) for doc_id, (_, terms) in docs.items()}
        df = self._df(namespace, {term for pairs in matched.values() for term, _ in pairs})
        average = length_sum / count if count else 1.0
        scores = {}
        for doc_id, (length, terms) in docs.items():
            norm = K1 * (1 - B + B * length / average)
            scores[doc_id] = sum(
                weight * _idf(count, df.get(term, 0)) * terms[term] * (K1 + 1) / (terms[term] + norm)
                for term, weight in matched[doc_id]
            )
        return scores

    def _df(self, namespace: str, terms: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        ordered = sorted(terms)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            found.update(
                self._db.execute(
                    f"SELECT term, n FROM df WHERE namespace = ? AND term IN ({', '.join('?' * len(chunk))})",
                    [namespace, *chunk],
                )
            )
        return found

    def check(self) -> None:
        """Raises if the statistics cannot be read (what the doctor's index check runs)."""
        self._db.execute("SELECT count(*) FROM docs").fetchone()
        self._db.execute("SELECT count(*) FROM df").fetchone()


def _count(delta: dict[tuple[str, str], int], namespace: str, terms: Counter[str], sign: int) -> None:
    for term in terms:
        delta[namespace, term] = delta.get((namespace, term), 0) + sign
    delta[namespace, ""] = delta.get((namespace, ""), 0) + sign
    delta[namespace, "#"] = delta.get((namespace, "#"), 0) + sign * sum(terms.values())


def _matches(query: Sequence[tuple[Clause, list[str]]], terms: Counter[str]) -> list[tuple[str, float]]:
    """(document term, weight) for each query term the document holds, once per occurrence in
    the query; a fuzzy query term matches every document term within its edit distance."""
    found = []
    for clause, words in query:
        for wanted in words:
            if not clause.fuzziness:
                if wanted in terms:
                    found.append((wanted, clause.boost))
                continue
            prefix = wanted[: clause.prefix_length]
            found += [
                (term, clause.boost)
                for term in terms
                if term.startswith(prefix) and _within(term, wanted, clause.fuzziness)
            ]
    return found


def _idf(count: int, holding: int) -> float:
    return math.log(1 + (count - holding + 0.5) / (holding + 0.5))


def _within(a: str, b: str, limit: int) -> bool:
    """Whether the Levenshtein distance (insert, delete, substitute) is <= limit: LanceDB's fuzzy
    match, which counts two swapped neighbours as two edits ("dgo" is 2 from "dog")."""
    if abs(len(a) - len(b)) > limit:
        return False
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (ca != cb)))
        row = current
    return row[-1] <= limit
