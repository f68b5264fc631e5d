"""The `match` signal and min_score: a client can tell when nothing stored answers the query."""

from __future__ import annotations

import pytest

from mcp_memalpha import CallContext, Memory
from mcp_memalpha.embedding import Embedder
from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.match import STRONG_AT, WEAK_AT, coverage, match_level, match_scores, without_time, words
from mcp_memalpha.tools import execute

FACTS = [
    "Dana works as a nurse at St. Mary's hospital in Leeds.",
    "Dana's sister Ruth lives in Toronto with her two kids.",
    "Dana adopted a grey cat named Pixel in March.",
    "Dana is allergic to peanuts.",
]


@pytest.fixture
def stocked(memory: Memory, ctx: CallContext) -> Memory:
    for fact in FACTS:
        memory.insert(ctx, "semantic", fact)
    return memory


def test_levels() -> None:
    assert (match_level(None), match_level(WEAK_AT - 0.01), match_level(WEAK_AT), match_level(STRONG_AT)) == (
        "none",
        "none",
        "weak",
        "strong",
    )


@pytest.fixture(scope="module")
def embed() -> Embedder:
    return Embedder()


def test_coverage_counts_a_stem_whole_and_a_near_synonym_in_part(embed: Embedder) -> None:
    def score(wanted: list[str], text: str) -> float:
        held = words(text)
        return coverage(wanted, held, dict(zip(wanted + held, embed.embed(wanted + held), strict=True)))

    assert score(words("Where does Dana work?"), FACTS[0]) == 1.0  # 'works' and 'work' share a stem
    assert score(["scared", "vehicle"], "I'm afraid of spiders and drive a car.") > 0.9  # near-synonyms
    assert score(["quartz"], "I'm afraid of spiders and drive a car.") == 0.0  # the nearest is unrelated
    assert score([], FACTS[0]) == 0.0


def test_time_words_are_not_asked_for(embed: Embedder) -> None:
    assert without_time("What did Dana adopt in March?").split() == ["What", "did", "Dana", "adopt", "?"]
    assert match_scores("What did Dana adopt in March?", FACTS, embed.embed) == match_scores(
        "What did Dana adopt?", FACTS, embed.embed
    )


# First-person one-line facts: questions worded unlike their fact, and questions none answers.
SHORT_FACTS = [
    "I drive a red Toyota Yaris.",
    "I'm afraid of spiders.",
    "My sister Ana is a dentist in Madrid.",
    "We adopted a puppy named Rex last spring.",
]
PARAPHRASES = [
    "What vehicle do I have?",
    "What am I scared of?",
    "What does my sister do for work?",
    "Do we have a dog?",
]
UNANSWERED = ["What is my blood type?", "When does my passport expire?", "quartz lantern orbit velvet"]


def test_a_short_fact_asked_in_other_words_is_a_match(embed: Embedder) -> None:
    """Short facts share few words with a question: the signal must not read them as nothing."""
    levels = [match_level(max(match_scores(q, SHORT_FACTS, embed.embed))) for q in PARAPHRASES]
    assert sum(level != "none" for level in levels) >= 3, levels  # one below what was measured (4 of 4)
    assert [match_level(max(match_scores(q, SHORT_FACTS, embed.embed))) for q in UNANSWERED] == ["none"] * 3


@pytest.mark.parametrize("query", ["quartz lantern orbit velvet", "submarine harmonica glacier", "weigh bout"])
def test_random_words_match_nothing(stocked: Memory, ctx: CallContext, query: str) -> None:
    outcome = stocked.search(ctx, query, top_k=5)
    assert outcome.hits  # the ranking still returns something...
    assert outcome.match == "none"  # ...but says it is no match


@pytest.mark.parametrize("query", ["Where does Dana work?", "What is the name of Dana's cat?"])
def test_a_question_with_an_answer_is_a_strong_match(stocked: Memory, ctx: CallContext, query: str) -> None:
    assert stocked.search(ctx, query, top_k=5).match == "strong"


def test_min_score_drops_weak_results_and_keeps_the_signal(stocked: Memory, ctx: CallContext) -> None:
    everything = stocked.search(ctx, "Where does Dana work?", top_k=4)
    best = stocked.search(ctx, "Where does Dana work?", top_k=4, min_score=0.6)
    assert len(everything.hits) == 4 and [h.item.content for h in best.hits] == [FACTS[0]]
    assert best.dropped == 3 and best.match == "strong" and best.best_match == everything.best_match
    nothing = stocked.search(ctx, "quartz lantern orbit velvet", min_score=WEAK_AT)
    assert (nothing.hits, nothing.match) == ([], "none")


def test_min_score_is_checked(stocked: Memory, ctx: CallContext) -> None:
    with pytest.raises(InvalidArgument, match="min_score"):
        stocked.search(ctx, "Dana", min_score=1.5)
    with pytest.raises(InvalidArgument, match="min_score"):
        execute(stocked, ctx, "search_memory", {"query": "Dana", "min_score": -1})


def test_the_tool_result_carries_the_signal_and_the_dates(stocked: Memory, ctx: CallContext) -> None:
    out = execute(stocked, ctx, "search_memory", {"query": "Dana's cat", "top_k": 2})
    assert out["match"] == "strong" and out["best_match_score"] >= STRONG_AT
    top = out["results"][0]
    assert top["text"] == FACTS[2] and top["match_score"] == out["best_match_score"]
    assert top["created_at"] == top["updated_at"]


def test_a_memory_of_the_time_asked_about_counts(memory: Memory, ctx: CallContext) -> None:
    """A question that names nothing but a time ("What did I do yesterday?") is answered by a memory of then."""
    memory.insert(ctx, "episodic", "Had dinner with Sam at the Thai place.", "yesterday")
    memory.insert(ctx, "episodic", "Bought a floor lamp for the study.", "in March")
    assert memory.search(ctx, "What did I do yesterday?", top_k=2).match != "none"
    assert memory.search(ctx, "What did I do in February?", top_k=2).match == "none"  # nothing of then
    assert memory.search(ctx, "What did the plumber say yesterday?", top_k=2).match == "none"
