"""Why the embedded model: its load time, speed, and retrieval quality on the LoCoMo dev set.

Each LoCoMo turn is stored as one episodic memory ("{speaker}: {text}", the session date as its
time); each question of categories 1-4 is a query; evidence recall@10 is the share of a
question's evidence turns among the top 10. Reported per search method of our store.

    python benchmarks/embeddings.py --locomo ../shared/data/locomo/locomo_dev.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def load_speed() -> tuple[float, float]:
    from mcp_memalpha.embedding import Embedder

    started = time.perf_counter()
    embedder = Embedder()
    embedder.embed(["warm"])
    load = time.perf_counter() - started
    sentences = [f"Sentence number {i} about a walk in the park with the dog" for i in range(5000)]
    started = time.perf_counter()
    embedder.embed(sentences)
    return load, len(sentences) / (time.perf_counter() - started)


def evidence_recall(locomo: Path, k: int = 10) -> dict[str, float]:
    from mcp_memalpha import CallContext, Memory, Settings

    conversations = json.loads(locomo.read_text())
    scores: dict[str, list[float]] = {"bm25": [], "vector": [], "hybrid": []}
    with tempfile.TemporaryDirectory() as tmp, Memory(Settings(data_dir=Path(tmp))) as memory:
        for conversation in conversations:
            ctx = CallContext(namespace=conversation["sample_id"])
            dia_of: dict[str, str] = {}
            turns = conversation["conversation"]
            for session in range(1, 100):
                if f"session_{session}" not in turns:
                    continue
                date = turns[f"session_{session}_date_time"]
                for turn in turns[f"session_{session}"]:
                    item = memory.insert(ctx, "episodic", f"{turn['speaker']}: {turn['text']}", date)
                    dia_of[item.id] = turn["dia_id"]
            for qa in conversation["qa"]:
                if qa["category"] not in (1, 2, 3, 4) or not qa.get("evidence"):
                    continue
                for method in scores:
                    hits = memory.search(ctx, qa["question"], method=method, top_k=k).hits
                    found = {dia_of[h.item.id] for h in hits}
                    scores[method].append(sum(e in found for e in qa["evidence"]) / len(qa["evidence"]))
    return {method: statistics.mean(values) for method, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locomo", type=Path, default=Path("../shared/data/locomo/locomo_dev.json"))
    args = parser.parse_args()
    load, rate = load_speed()
    print(f"minilm-static (model2vec, 256-d): load {load:.2f} s, {rate:,.0f} sentences/s", file=sys.stderr)
    recall = evidence_recall(args.locomo)
    print("| store search method | evidence recall@10 |\n|---|---|")
    for method, value in recall.items():
        print(f"| {method} | {value:.3f} |")
    print(f"\nembedding load {load:.2f} s, throughput {rate:,.0f} sentences/s (one thread of 2 cores)")


if __name__ == "__main__":
    main()
