"""Calibrate the search result's `match` signal (strong / weak / none) on short facts and long turns.

Two sets, each stored in-process through `Memory.insert` and asked through `Memory.search`:
- the everyday suite (tests/data/everyday.json: one-line facts and events of an invented person,
  events dated in words), asked with top_k=5 as tests/test_everyday.py does;
- the LoCoMo dev conversations, stored turn by turn (as `eval-retrieval` does), top_k=10.
On each, three kinds of query: questions with an answer (grouped by where the answer ranks),
questions nothing stored answers (the suite's own, OFF_TOPIC below, written for neither set, and
on the suite TIMED_OFF_TOPIC, which name a time), and 2-6 random vocabulary words (fixed seed).
LoCoMo's adversarial questions (category 5, about what the other speaker did) are shown apart:
their top hits are on topic by design.

It prints, per set and kind, the spread of the best match score and the count at each level
under the thresholds of `mcp_memalpha.match`, then the thresholds the data would choose: weak
on the everyday suite (most answers at rank 1 kept above it, fewest written no-answer questions),
strong on LoCoMo (the lowest score at most STRONG_FALSE of its no-answer queries reach), each to
be checked on the other set. Figures: docs/retrieval.md.
Run: `nice python benchmarks/match_calibration.py [--locomo FILE]` (~1 minute).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.match import STRONG_AT, WEAK_AT

ROOT = Path(__file__).resolve().parents[1]
LOCOMO = ROOT / ".." / "shared" / "data" / "locomo" / "locomo_dev.json"
EVERYDAY = ROOT / "tests" / "data" / "everyday.json"
STRONG_FALSE = 0.02  # share of no-answer queries that may read `strong`
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
# Asked of the everyday suite only: questions that name a time (some with memories of that time,
# none about what is asked), since a memory of the time a query names counts towards its match.
TIMED_OFF_TOPIC = [
    "What did the plumber say last week?",
    "Who did I meet at the bank yesterday?",
    "What did I cook for lunch two days ago?",
    "Which film did I watch last month?",
    "What did the landlord email about this morning?",
    "Where did I go skiing in February?",
    "What did the mechanic say in March?",
    "Which concert did I go to in May?",
]
KINDS = [
    "answer at rank 1",
    "answer at rank 2+",
    "answer not in the results",
    "no answer (written)",
    "off-topic",
    "off-topic, naming a time",
    "random words",
    "adversarial (LoCoMo 5)",
]
ANSWERS = KINDS[:3]
NO_ANSWER = KINDS[3:7]

Scores = dict[str, list[float]]  # kind -> best match score of each query


def random_queries(count: int, seed: int) -> list[str]:
    vocab = ROOT / "mcp_memalpha" / "assets" / "minilm-static" / "tokenizer.json"
    words = sorted(w for w in json.loads(vocab.read_text())["model"]["vocab"] if re.fullmatch(r"[a-z]{4,12}", w))
    rng = random.Random(seed)
    return [" ".join(rng.sample(words, rng.randint(2, 6))) for _ in range(count)]


def ask(memory: Memory, query: str, top_k: int, answers: set[str] | None) -> tuple[str | None, float]:
    """The query's kind by where its answer ranks (None: it has none) and its best match score."""
    outcome = memory.search(CallContext(), query, top_k=top_k)
    best = outcome.best_match if outcome.best_match is not None else 0.0
    if answers is None:
        return None, best
    ranks = [i for i, hit in enumerate(outcome.hits) if hit.item.id in answers]
    return (ANSWERS[0] if ranks[:1] == [0] else ANSWERS[1] if ranks else ANSWERS[2]), best


def ask_unanswerable(memory: Memory, scores: Scores, top_k: int, kind: str, queries: Iterable[str]) -> None:
    scores[kind] += [ask(memory, query, top_k, None)[1] for query in queries]


def everyday(work: Path) -> Scores:
    data, scores = json.loads(EVERYDAY.read_text()), defaultdict(list)
    with Memory(Settings(data_dir=work / "everyday")) as memory:
        ctx = CallContext()
        ids = {m["key"]: memory.insert(ctx, m["type"], m["content"], m.get("timestamp")).id for m in data["memories"]}
        memory.sync_index()
        for question in data["questions"]:
            if question["expect"] is None:
                scores[NO_ANSWER[0]].append(ask(memory, question["query"], 5, None)[1])
            else:
                kind, best = ask(memory, question["query"], 5, {ids[question["expect"]]})
                scores[str(kind)].append(best)
        ask_unanswerable(memory, scores, 5, "off-topic", OFF_TOPIC)
        ask_unanswerable(memory, scores, 5, "off-topic, naming a time", TIMED_OFF_TOPIC)
        ask_unanswerable(memory, scores, 5, "random words", random_queries(60, seed=31))
    return scores


def store(memory: Memory, conversation: dict[str, Any]) -> dict[str, set[str]]:
    """Every turn as an episodic memory; returns LoCoMo dia_id -> memory ids."""
    ctx, turns = CallContext(), conversation["conversation"]
    ids: dict[str, set[str]] = defaultdict(set)
    for session in range(1, 200):
        for turn in turns.get(f"session_{session}", []):
            item = memory.insert(
                ctx, "episodic", f"{turn['speaker']}: {turn['text']}", turns[f"session_{session}_date_time"]
            )
            ids[turn["dia_id"]].add(item.id)
    memory.sync_index()
    return ids


def locomo(path: Path, work: Path) -> Scores:
    conversations, scores = json.loads(path.read_text()), defaultdict(list)
    randoms = random_queries(60 * len(conversations), seed=13)
    for number, conversation in enumerate(conversations):
        with Memory(Settings(data_dir=work / str(number))) as memory:
            ids = store(memory, conversation)
            for qa in conversation["qa"]:
                if qa.get("category") in (1, 2, 3, 4) and qa.get("evidence"):
                    answers = set().union(*(ids.get(e, set()) for e in qa["evidence"]))
                    kind, best = ask(memory, qa["question"], 10, answers)
                    scores[str(kind)].append(best)
                elif qa.get("category") == 5:
                    scores[KINDS[7]].append(ask(memory, qa["question"], 10, None)[1])
            ask_unanswerable(memory, scores, 10, "off-topic", OFF_TOPIC)
            ask_unanswerable(memory, scores, 10, "random words", randoms[number * 60 : (number + 1) * 60])
        print(f"LoCoMo conversation {number + 1}/{len(conversations)} done", file=sys.stderr)
    return scores


def share_at(values: list[float], threshold: float) -> float:
    return sum(v >= threshold for v in values) / len(values) if values else 0.0


def weak_threshold(scores: Scores) -> float:
    """The threshold that keeps most answers at rank 1 above it and fewest written no-answer
    questions (the suite's own and the off-topic ones): the largest gap, the highest on a tie."""
    answered, unanswered = scores[ANSWERS[0]], [v for kind in NO_ANSWER[:3] for v in scores[kind]]
    grid = [t / 100 for t in range(10, 90)]
    return max(grid, key=lambda t: (share_at(answered, t) - share_at(unanswered, t), t))


def strong_threshold(scores: Scores) -> float:
    """The lowest threshold that at most STRONG_FALSE of the no-answer queries reach."""
    unanswered = [v for kind in NO_ANSWER for v in scores[kind]]
    return min(t / 100 for t in range(10, 101) if share_at(unanswered, t / 100) <= STRONG_FALSE)


def table(name: str, scores: Scores, strong: float, weak: float) -> list[str]:
    lines = [f"\n{name} (strong >= {strong}, weak >= {weak})\n"]
    lines += ["| queries | n | p5 | median | p95 | strong | weak | none |", "|---|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        values = sorted(scores.get(kind, []))
        if not values:
            continue
        n = len(values)
        spread = " | ".join(f"{values[min(n - 1, int(q * n))]:.2f}" for q in (0.05, 0.5, 0.95))
        levels = (sum(v >= strong for v in values), sum(weak <= v < strong for v in values))
        counts = f"{levels[0]} | {levels[1]} | {n - sum(levels)}"
        lines.append(f"| {kind} | {n} | {spread} | {counts} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locomo", type=Path, default=LOCOMO, help="LoCoMo conversations (JSON)")
    parser.add_argument("--at", nargs=2, type=float, metavar=("WEAK", "STRONG"), help="also show these thresholds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        sets = {"everyday suite": everyday(Path(work)), "LoCoMo dev": locomo(args.locomo, Path(work))}
    for name, scores in sets.items():
        print("\n".join(table(name, scores, STRONG_AT, WEAK_AT)))
    weak, strong = weak_threshold(sets["everyday suite"]), strong_threshold(sets["LoCoMo dev"])
    print(f"\nchosen by the data: weak >= {weak} (on the everyday suite), strong >= {strong} (on LoCoMo dev)")
    print(f"in mcp_memalpha.match: weak >= {WEAK_AT}, strong >= {STRONG_AT}")
    if args.at:
        for name, scores in sets.items():
            print("\n".join(table(name, scores, args.at[1], args.at[0])))


if __name__ == "__main__":
    main()
