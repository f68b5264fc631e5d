"""Calibrate the search result's `match` signal (strong / weak / none) on LoCoMo dev.

Stores each dev conversation turn by turn (as `eval-retrieval` does, in-process), then asks
three kinds of query and records the best match score of the top 10 (`SearchOutcome.best_match`):
- questions with evidence (categories 1-4): memory holds the answer;
- off-topic questions (written here, about nothing the conversations discuss);
- random words: 2-6 whole words drawn with a fixed seed from the embedded model's vocabulary.
It prints each kind's distribution and the share of each level under the thresholds in
`mcp_memalpha.match`. Figures: docs/retrieval.md. Run: `nice python benchmarks/match_calibration.py`.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import sys
import tempfile
from pathlib import Path

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.match import STRONG_AT, WEAK_AT, match_level

LOCOMO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "locomo" / "locomo_dev.json"
OFF_TOPIC = [
    "What is the boiling point of tungsten?",
    "Who designed the Eiffel Tower's elevators?",
    "How many moons does Neptune have?",
    "What is the capital of Kyrgyzstan?",
    "How do I reset my router's firmware?",
    "What is the half-life of carbon-14?",
    "Which enzyme breaks down lactose?",
    "What is my car insurance policy number?",
    "When is the dentist appointment for the dog's teeth cleaning?",
    "What is the password for the office wifi?",
    "How tall is Mount Kilimanjaro?",
    "Who wrote the Treaty of Westphalia?",
    "What is the torque spec for the bicycle's stem bolts?",
    "How much did the plumber charge for the boiler?",
    "What is the airline's baggage allowance?",
    "Which vaccine did I get in the pharmacy?",
    "What is the derivative of the hyperbolic tangent?",
    "What's the ISBN of the chemistry textbook?",
    "How many calories are in a croissant?",
    "What is the tax deadline for freelancers?",
    "Where did I park the car at the airport?",
    "What voltage does the espresso machine need?",
    "Who is the landlord of the warehouse?",
    "What is the melting point of gallium?",
    "Which gate does the ferry to Helsinki leave from?",
    "What is the cholesterol reading from the blood test?",
    "How do you say thank you in Finnish?",
    "What is the serial number of the laptop?",
    "When does the gym's sauna close?",
    "What did the mechanic say about the brake pads?",
]


def random_queries(count: int, seed: int = 13) -> list[str]:
    vocab = Path(__file__).resolve().parents[1] / "mcp_memalpha" / "assets" / "minilm-static" / "tokenizer.json"
    words = sorted(w for w in json.loads(vocab.read_text())["model"]["vocab"] if re.fullmatch(r"[a-z]{4,12}", w))
    rng = random.Random(seed)
    return [" ".join(rng.sample(words, rng.randint(2, 6))) for _ in range(count)]


def store(memory: Memory, conversation: dict) -> None:
    ctx, turns = CallContext(), conversation["conversation"]
    for session in range(1, 200):
        for turn in turns.get(f"session_{session}", []):
            memory.insert(ctx, "episodic", f"{turn['speaker']}: {turn['text']}", turns[f"session_{session}_date_time"])
    memory.sync_index()


def best(memory: Memory, query: str) -> float:
    outcome = memory.search(CallContext(), query, top_k=10)
    return outcome.best_match if outcome.best_match is not None else 0.0


def report(name: str, values: list[float]) -> str:
    levels = [match_level(v) for v in values]
    cuts = statistics.quantiles(values, n=20)
    shares = " | ".join(f"{levels.count(level) / len(levels):.2f}" for level in ("strong", "weak", "none"))
    spread = " | ".join(f"{v:.2f}" for v in (cuts[0], cuts[4], statistics.median(values), cuts[14], cuts[18]))
    return f"| {name} | {len(values)} | {spread} | {shares} |"


def main() -> None:
    conversations = json.loads(LOCOMO.read_text())
    groups: dict[str, list[float]] = {"questions with evidence": [], "off-topic questions": [], "random words": []}
    randoms = random_queries(60 * len(conversations))
    with tempfile.TemporaryDirectory() as work:
        for number, conversation in enumerate(conversations):
            with Memory(Settings(data_dir=Path(work) / str(number))) as memory:
                store(memory, conversation)
                for qa in conversation["qa"]:
                    if qa.get("category") in (1, 2, 3, 4) and qa.get("evidence"):
                        groups["questions with evidence"].append(best(memory, qa["question"]))
                groups["off-topic questions"] += [best(memory, q) for q in OFF_TOPIC]
                groups["random words"] += [best(memory, q) for q in randoms[number * 60 : (number + 1) * 60]]
            print(f"conversation {number + 1}/{len(conversations)} done", file=sys.stderr)
    print(f"thresholds: strong >= {STRONG_AT}, weak >= {WEAK_AT}, else none\n")
    print("| queries | n | p5 | p25 | median | p75 | p95 | strong | weak | none |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, values in groups.items():
        print(report(name, values))


if __name__ == "__main__":
    main()
