"""mcp_memalpha.training.rewards: each term on call records shaped like real rollouts, and the weighted sum."""

from __future__ import annotations

import pytest
from mcp_memalpha.policy.calls import CallRecord
from mcp_memalpha.training.rewards import (
    HeuristicTypeJudge,
    RewardWeights,
    chunk_reward,
    compression_reward,
    executed_reward,
    qa_reward,
    type_fit_reward,
)

STAMP = "1:56 pm on 8 May, 2023"


def insert(kind: str, content: str, ok: bool = True, **extra: object) -> CallRecord:
    return CallRecord(1, "new_memory_insert", {"memory_type": kind, "content": content, **extra}, ok)


def test_qa_reward_is_the_mean_score() -> None:
    assert qa_reward([1.0, 0.5, 0.0]) == 0.5
    assert qa_reward([]) == 0.0


def test_executed_reward_is_the_share_of_calls_that_ran() -> None:
    records = [insert("episodic", "a b c"), insert("semantic", "d e f", ok=False), CallRecord(1, "", {}, False)]
    assert executed_reward(records) == pytest.approx(1 / 3)
    assert executed_reward([]) == 0.0  # no call, no credit


def test_compression_reward() -> None:
    assert compression_reward(250, 1000) == 0.75
    assert compression_reward(0, 1000) == 1.0
    assert compression_reward(1500, 1000) == 0.0  # floored: a memory larger than its input earns nothing
    assert compression_reward(10, 0) == 0.0


def test_heuristic_judge_episodic_needs_an_event_and_a_time() -> None:
    judge = HeuristicTypeJudge()
    event = "Caroline went to an LGBTQ support group yesterday."
    assert judge.fits("episodic", event, {"timestamp": STAMP})
    assert not judge.fits("episodic", event, {})  # no time anywhere
    assert judge.fits("episodic_memory", "Melanie painted a lake sunrise in 2022.", {})  # date in the text
    assert not judge.fits("episodic", "Caroline is a transgender woman.", {"timestamp": STAMP})  # a state, no event


def test_heuristic_judge_semantic_wants_stable_facts() -> None:
    judge = HeuristicTypeJudge()
    assert judge.fits("semantic", "Caroline works as a counselor and likes pottery.", {})
    assert judge.fits("semantic_memory", "Melanie's favorite book is Charlotte's Web.", {})
    assert not judge.fits("semantic", "Caroline went to a support group yesterday.", {})  # an event
    assert not judge.fits("semantic", "Caroline is tired today.", {})  # transient


def test_heuristic_judge_refuses_small_talk_and_fragments() -> None:
    judge = HeuristicTypeJudge()
    for kind in ("episodic", "semantic", "core"):
        assert not judge.fits(kind, "Melanie: Thanks, Caroline!", {"timestamp": STAMP})
        assert not judge.fits(kind, "ok then", {"timestamp": STAMP})


def test_heuristic_judge_core_is_a_summary_of_someone() -> None:
    judge = HeuristicTypeJudge()
    assert judge.fits("core", "Caroline is a transgender woman who wants to become a counselor.", {})
    assert not judge.fits("core", "Caroline went out yesterday with friends.", {})


def test_type_fit_reward_counts_writes_and_bad_calls_but_not_reads() -> None:
    records = [
        insert("episodic", "Caroline went to a support group yesterday.", timestamp=STAMP),  # fits
        insert("semantic", "Caroline went to a support group yesterday."),  # wrong type
        CallRecord(1, "memory_delete", {"memory_type": "semantic", "memory_id": "s-abc123"}, True),  # 0
        CallRecord(1, "", {}, False, error="not a JSON object"),  # unparseable: 0
        CallRecord(1, "search_memory", {"query": "support group"}, True),  # not counted
    ]
    assert type_fit_reward(records) == pytest.approx(1 / 4)
    assert type_fit_reward(records[-1:]) == 0.0
    update = CallRecord(
        1, "memory_update", {"memory_type": "core", "new_content": "Caroline is a counselor in Boston."}, True
    )
    assert type_fit_reward([update]) == 1.0


def test_chunk_reward_uses_the_paper_weights_by_default() -> None:
    weights = RewardWeights()
    assert (weights.qa, weights.executed, weights.compression, weights.type_fit) == (1.0, 1.0, 0.05, 0.1)
    assert chunk_reward(0.5, 1.0, 0.8, 0.5, weights) == pytest.approx(0.5 + 1.0 + 0.04 + 0.05)
    assert chunk_reward(0.5, 1.0, 0.8, 0.5, RewardWeights(compression=0.4)) == pytest.approx(0.5 + 1.0 + 0.32 + 0.05)


# ---- terms beyond the paper's (weight 0 in the reference configuration) ----------------------


def test_filler_penalty_is_the_share_of_writes_that_copy_small_talk() -> None:
    from mcp_memalpha.training.rewards import filler_penalty, is_filler

    assert is_filler("Caroline: Hi Melanie!")
    assert is_filler("Melanie: Thanks, Caroline! That sounds great.")
    assert is_filler("Wow, that's so cool!")
    assert not is_filler("Caroline: I adopted a dog named Biscuit.")
    assert not is_filler("Melanie: Thanks! I ran a charity race for mental health last Saturday.")
    records = [
        insert("semantic", "Caroline: Thanks so much!"),
        insert("episodic", "Caroline: I went to a LGBTQ support group yesterday."),
        insert("episodic", "Caroline: Hello!", ok=False),  # refused: not in memory, not counted
        CallRecord(1, "search_memory", {"memory_type": "semantic", "query": "hi"}, True),
    ]
    assert filler_penalty(records) == 0.5
    assert filler_penalty([]) == 0.0


def test_budget_reward_is_full_within_the_budget_and_falls_to_zero_at_twice_it() -> None:
    from mcp_memalpha.training.rewards import budget_reward

    assert budget_reward(0, 100) == 1.0
    assert budget_reward(100, 100) == 1.0
    assert budget_reward(150, 100) == 0.5
    assert budget_reward(250, 100) == 0.0
    with pytest.raises(ValueError, match="budget_tokens"):
        budget_reward(10, 0)


def test_answer_reward_credits_every_write_that_holds_an_answer_as_the_reader_sees_it() -> None:
    from mcp_memalpha.training.data import QA
    from mcp_memalpha.training.metrics import metric_for
    from mcp_memalpha.training.rewards import answer_reward

    metric = metric_for("locomo", extractive=True)
    questions = [
        QA("What is the dog's name?", "Biscuit", 4),
        QA("What did Melanie run?", "charity race", 4),
        QA("When did Caroline go to the support group?", "7 May 2023", 2),
    ]
    semantic = [insert("semantic", "Caroline: My dog is named Biscuit.")]
    assert answer_reward(semantic, questions, metric.score) == pytest.approx(1 / 3)
    both = [
        *semantic,
        CallRecord(1, "memory_update", {"memory_type": "core", "new_content": "Melanie ran a charity race."}, True),
    ]
    assert answer_reward(both, questions, metric.score) == pytest.approx(2 / 3)
    # an episodic write answers a "when" question through the date the memory stored (as a search
    # hit shows it: "[8 May 2023] ... yesterday ... (yesterday = 7 May 2023)"), not through its words
    episode = "Caroline: I went to the support group yesterday."
    dated = CallRecord(
        1,
        "new_memory_insert",
        {"memory_type": "episodic", "content": episode},
        True,
        output={"memory_id": "e1", "event_time": "2023-05-08T13:56:00"},
    )
    assert answer_reward([dated], questions, metric.score) == pytest.approx(1 / 3)
    assert answer_reward([insert("episodic", episode)], questions, metric.score) == 0.0  # stored without a date
    assert answer_reward([insert("semantic", "Biscuit", ok=False)], questions, metric.score) == 0.0
    assert answer_reward(semantic, [], metric.score) == 0.0
