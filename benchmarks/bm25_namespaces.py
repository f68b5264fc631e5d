"""The cost of scoring BM25 with one namespace's statistics, against LanceDB's own (whole-table)
scores, on the same index in one run.

Builds a 10,000-memory namespace from speed.py's corpus (in-process import), then asks the LoCoMo
questions through both paths, alternately: "whole-table" is the query the index ran before (LanceDB's
scores, top 50, as a search's candidate pool), "per-namespace" is `SearchIndex.text_search` now
(every match in the namespace, scored with its statistics). Prints p50 / p95 per path.

    nice -n 10 python benchmarks/bm25_namespaces.py --items 10000 --queries 200
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.speed import corpus, percentile, write_import_file
from mcp_memalpha import Memory, Settings
from mcp_memalpha.store.index import Filter
from mcp_memalpha.transfer import import_jsonl

POOL = 50  # the candidates a search of top_k 10 asks for (memory.py: max(top_k * 3, 50))


def whole_table(memory: Memory, query: str, where: Filter) -> list[tuple[str, float]]:
    from lancedb.query import MatchQuery

    table = memory.index._table_for_query()
    rows = (
        table.search(MatchQuery(query, "search_text"), query_type="fts")
        .where(where.where(), prefilter=True)
        .limit(POOL)
        .select(["id", "_score"])
        .to_list()
    )
    return [(row["id"], float(row["_score"])) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    texts, questions = corpus()
    with tempfile.TemporaryDirectory(prefix="memalpha-bm25-") as work:
        dump = Path(work) / "items.jsonl"
        write_import_file(dump, texts, args.items, random.Random(args.items))
        with Memory(Settings(data_dir=Path(work) / "data")) as memory:
            with dump.open() as lines:
                import_jsonl(memory, lines)
            memory.index.rebuild(memory.ledger)  # every row in the full-text index
            where = Filter("default", ("episodic", "semantic"))
            times: dict[str, list[float]] = {"whole-table": [], "per-namespace": []}
            matches = []
            for question in questions[: args.queries]:
                for name, search in (
                    ("whole-table", lambda q: whole_table(memory, q, where)),
                    ("per-namespace", lambda q: memory.index.text_search(q, where, POOL)),
                ):
                    begin = time.perf_counter()
                    search(question)
                    times[name].append((time.perf_counter() - begin) * 1000)
                matches.append(
                    len(
                        memory.index._table_for_query()
                        .search(question, query_type="fts")
                        .limit(args.items)
                        .select(["id", "_score"])
                        .to_list()
                    )
                )
    print(
        f"{args.items:,} memories in one namespace, {len(matches)} LoCoMo questions; matches per question "
        f"p50 {statistics.median(matches):,.0f}, max {max(matches):,}"
    )
    print("| BM25 scoring | p50 (ms) | p95 (ms) |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.95):.1f} |")


if __name__ == "__main__":
    main()
