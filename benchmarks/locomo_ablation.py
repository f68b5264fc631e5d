"""LoCoMo retrieval in-process, with signals switched off one at a time (the ablation table).

Stores each dev conversation once per data folder (as `eval-retrieval` does, turn by turn through
`Memory.insert`), keeps the folders, then runs every question of categories 1-4 through
`Memory.search` (top 10, the tools' defaults) under each named setting of the ranking's
constants. `eval-retrieval` (through the MCP tools) gives the headline figures; this gives the
ablation quickly. Figures: docs/retrieval.md.

Run: `nice -n 19 python benchmarks/locomo_ablation.py [--work DIR] [--only NAME ...]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.answer_metrics import answer_token_recall
from mcp_memalpha.retrieval_eval import CATEGORIES

LOCOMO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "locomo" / "locomo_dev.json"

# name -> {"module.CONSTANT": value}: each row of the table, the chosen ranking first. Only
# constants read at call time can be switched here (not default arguments).
SETTINGS: dict[str, dict[str, Any]] = {
    "chosen": {},
    "no near-synonyms": {"mcp_memalpha.expansion.SYNONYM_WEIGHT": 0.0},
    "no fuzzy stems": {"mcp_memalpha.expansion.MIN_FUZZY_LENGTH": 99},
    "no speaker prior": {"mcp_memalpha.rerank.SPEAKER_PENALTY": 0.0},
    "no question prior": {"mcp_memalpha.rerank.QUESTION_PENALTY": 0.0},
    "no head re-ranking": {"mcp_memalpha.rerank.SPEAKER_PENALTY": 0.0, "mcp_memalpha.rerank.QUESTION_PENALTY": 0.0},
}


def store(memory: Memory, conversation: dict[str, Any]) -> dict[str, str]:
    """Every turn as an episodic memory; returns memory id -> LoCoMo dia_id."""
    ctx, turns = CallContext(), conversation["conversation"]
    dia_of = {}
    for session in range(1, 200):
        for turn in turns.get(f"session_{session}", []):
            date = turns[f"session_{session}_date_time"]
            dia_of[memory.insert(ctx, "episodic", f"{turn['speaker']}: {turn['text']}", date).id] = turn["dia_id"]
    memory.sync_index()
    return dia_of


@contextmanager
def constants(values: dict[str, Any]) -> Iterator[None]:
    import importlib

    saved = []
    for dotted, value in values.items():
        module_name, name = dotted.rsplit(".", 1)
        module = importlib.import_module(module_name)
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def evaluate(memory: Memory, conversation: dict[str, Any], dia_of: dict[str, str], out: dict[str, Any]) -> None:
    for qa in conversation["qa"]:
        category = qa.get("category")
        if category not in CATEGORIES or not qa.get("evidence") or "answer" not in qa:
            continue
        hits = memory.search(CallContext(), qa["question"], top_k=10).hits
        found = {dia_of.get(hit.item.id) for hit in hits}
        text = "\n".join(hit.text for hit in hits)
        out["evidence"][category].append(sum(e in found for e in qa["evidence"]) / len(qa["evidence"]))
        out["answer"][category].append(answer_token_recall(qa["answer"], text))
        out["words"].append(len(text.split()))


def row(name: str, out: dict[str, Any]) -> str:
    cells = [f"{statistics.mean(out['evidence'][c]):.3f} / {statistics.mean(out['answer'][c]):.3f}" for c in CATEGORIES]
    every_e = [v for c in CATEGORIES for v in out["evidence"][c]]
    every_a = [v for c in CATEGORIES for v in out["answer"][c]]
    overall = f"{statistics.mean(every_e):.3f} / {statistics.mean(every_a):.3f}"
    return f"| {name} | " + " | ".join(cells) + f" | {overall} | {statistics.mean(out['words']):.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/memalpha-locomo-ablation"))
    parser.add_argument("--locomo", type=Path, default=LOCOMO)
    parser.add_argument("--only", nargs="*", help="names of SETTINGS rows to run (default: all)")
    args = parser.parse_args()
    conversations = json.loads(args.locomo.read_text())
    names = args.only or list(SETTINGS)
    results: dict[str, dict[str, Any]] = {
        name: {"evidence": defaultdict(list), "answer": defaultdict(list), "words": []} for name in names
    }
    for conversation in conversations:
        folder = args.work / conversation["sample_id"]
        ids_file = folder / "dia_of.json"
        with Memory(Settings(data_dir=folder)) as memory:
            if ids_file.exists():
                dia_of = json.loads(ids_file.read_text())
            else:
                started = time.perf_counter()
                dia_of = store(memory, conversation)
                ids_file.write_text(json.dumps(dia_of))
                print(f"{conversation['sample_id']}: stored in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            for name in names:
                with constants(SETTINGS[name]):
                    evaluate(memory, conversation, dia_of, results[name])
        print(f"{conversation['sample_id']}: done", file=sys.stderr)
    print("| ranking | " + " | ".join(CATEGORIES.values()) + " | overall | words |")
    print("|---|" + "---|" * (len(CATEGORIES) + 2))
    for name in names:
        print(row(name, results[name]))


if __name__ == "__main__":
    main()
