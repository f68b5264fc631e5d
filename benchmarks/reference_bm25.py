"""The issue's reference retriever, reproduced, to read its "retrieved tokens" in our units.

Plain BM25 (rank-bm25's Okapi, `\\b\\w+\\b` lower-case tokens, each turn "{speaker}: {text}" as
written, no dates) over each LoCoMo dev conversation, each question of categories 1-4 as the
query. Prints evidence recall@10, answer-token recall@10 and the size of the top 10 in
WordPiece tokens, whitespace words and `\\b\\w+\\b` tokens: the same units `mcp-memalpha
eval-retrieval` reports, so the two can be compared.

    pip install rank-bm25
    python benchmarks/reference_bm25.py --locomo ../shared/data/locomo/locomo_dev.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from mcp_memalpha.retrieval_eval import CATEGORIES, WORD_TOKEN, answer_token_recall
from mcp_memalpha.tokens import count_tokens


def main() -> None:
    from rank_bm25 import BM25Okapi

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locomo", type=Path, default=Path("../shared/data/locomo/locomo_dev.json"))
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    evidence, answer, wordpiece, words, word_tokens = [], [], [], [], []
    for conversation in json.loads(args.locomo.read_text()):
        turns = conversation["conversation"]
        docs = [
            (turn["dia_id"], f"{turn['speaker']}: {turn['text']}")
            for key, session in turns.items()
            if re.fullmatch(r"session_\d+", key)
            for turn in session
        ]
        bm25 = BM25Okapi([WORD_TOKEN.findall(text.lower()) for _, text in docs])
        for qa in conversation["qa"]:
            if qa.get("category") not in CATEGORIES or not qa.get("evidence") or "answer" not in qa:
                continue
            scores = bm25.get_scores(WORD_TOKEN.findall(qa["question"].lower()))
            top = [docs[i] for i in sorted(range(len(docs)), key=lambda i: -scores[i])[: args.k]]
            text = "\n".join(t for _, t in top)
            evidence.append(sum(e in {d for d, _ in top} for e in qa["evidence"]) / len(qa["evidence"]))
            answer.append(answer_token_recall(qa["answer"], text))
            wordpiece.append(sum(count_tokens(t) for _, t in top))
            words.append(len(text.split()))
            word_tokens.append(len(WORD_TOKEN.findall(text)))
    mean = statistics.mean
    k = args.k
    print(f"| retriever | questions | evidence recall@{k} | answer-token recall@{k} | WordPiece | words | \\w+ |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| BM25 reference (rank-bm25) | {len(evidence)} | {mean(evidence):.3f} | {mean(answer):.3f} | "
        f"{mean(wordpiece):.0f} | {mean(words):.0f} | {mean(word_tokens):.0f} |"
    )


if __name__ == "__main__":
    main()
