"""The everyday suite: an invented person's facts and events, asked for as a user would ask.

Everything goes through a spawned stdio server and a real MCP client: the memories are stored
with `new_memory_insert` (events with times in words, "yesterday", "last week", "in March", read
by the server against its clock, as the questions are), then each question of
tests/data/everyday.json is a `search_memory` call with `top_k=5`. A question with an answer
counts at rank 1 / in the top 5 when its memory is there; one with none counts (at both) when
the result's `match` is `none`. The floors sit just below the shares measured (docs/retrieval.md): the
test keeps them from falling, it does not hold any single question.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import call, connect, stdio_params

pytestmark = pytest.mark.anyio

SUITE = Path(__file__).parent / "data" / "everyday.json"
# (rank 1, top 5) shares, one question per kind below those measured when the suite landed
# (docs/retrieval.md; two below overall): a relative date can move one question with the day the
# suite runs on (on the 1st, "yesterday" is last month), and the floors are to catch a fall.
FLOORS = {
    "paraphrase": (0.66, 0.80),
    "synonym": (0.42, 0.71),
    "typo": (0.71, 0.85),
    "time": (0.63, 0.90),
    "none": (0.71, 0.71),  # 6 of 7 since the match recalibration: a memory about Mrs. Sousa is 'weak'
    "all": (0.70, 0.89),  # one lower with "none" (the ranking is unchanged)
    # The match signal (the same share twice): of the questions whose memory came first, those it
    # does not call `none` (26 of 29 measured; 11 of 29 under the calibration on LoCoMo turns alone),
    # and of the questions with no answer, those it does not call `strong` (7 of 7).
    "signal: answer first, match not none": (0.86, 0.86),
    "signal: no answer, match not strong": (0.85, 0.85),
}
NOT_NONE, NOT_STRONG = list(FLOORS)[-2:]


def test_the_suite_is_big_enough() -> None:
    data = json.loads(SUITE.read_text())
    keys = [memory["key"] for memory in data["memories"]]
    assert len(set(keys)) == len(keys) >= 25
    assert len(data["questions"]) >= 40
    assert {q["expect"] for q in data["questions"]} - {None} <= set(keys)
    kinds = {q["kind"] for q in data["questions"]}
    assert kinds == {"paraphrase", "synonym", "typo", "time", "none"}


async def everyday_shares(data_dir: Path) -> dict[str, tuple[float, float]]:
    """Share of the suite's questions answered at rank 1 and in the top 5, per kind and overall."""
    data = json.loads(SUITE.read_text())
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    async with connect(stdio_params(data_dir)) as client:
        key_of = {}
        for memory in data["memories"]:
            arguments = {"memory_type": memory["type"], "content": memory["content"]}
            if "timestamp" in memory:
                arguments["timestamp"] = memory["timestamp"]
            key_of[(await call(client, "new_memory_insert", **arguments))["memory_id"]] = memory["key"]
        for question in data["questions"]:
            found = await call(client, "search_memory", query=question["query"], top_k=5)
            keys = [key_of[hit["memory_id"]] for hit in found["results"]]
            if question["expect"] is None:
                first = top5 = found["match"] == "none"
            else:
                first, top5 = keys[:1] == [question["expect"]], question["expect"] in keys
            print(f"{question['kind']:10} {int(first)}{int(top5)} {found['match']:6} {question['query']} -> {keys[:3]}")
            tallies = [(kind, first, top5) for kind in (question["kind"], "all")]
            if question["expect"] is None:  # the signal may call a related memory weak, not strong
                tallies.append((NOT_STRONG, found["match"] != "strong", found["match"] != "strong"))
            elif first:  # the right memory came first: the signal must not say nothing matches
                tallies.append((NOT_NONE, found["match"] != "none", found["match"] != "none"))
            for kind, hit_first, hit_top5 in tallies:
                counts[kind][0] += hit_first
                counts[kind][1] += hit_top5
                counts[kind][2] += 1
    return {kind: (first / n, top5 / n) for kind, (first, top5, n) in counts.items()}


async def test_everyday_questions_find_their_memory(tmp_path: Path) -> None:
    shares = await everyday_shares(tmp_path / "data")
    print({kind: (round(first, 3), round(top5, 3)) for kind, (first, top5) in sorted(shares.items())})
    for kind, (first_floor, top5_floor) in FLOORS.items():
        first, top5 = shares[kind]
        assert first >= first_floor, f"{kind}: rank-1 share {first:.3f} below {first_floor}"
        assert top5 >= top5_floor, f"{kind}: top-5 share {top5:.3f} below {top5_floor}"
