"""Excerpts of long search results and the parts of multi-part queries."""

from __future__ import annotations

import pytest

from mcp_memalpha.excerpt import ELLIPSIS, LEAD_HITS, excerpt, excerpts, rank_budgets
from mcp_memalpha.query import MAX_PARTS, content_words, query_parts
from mcp_memalpha.ranking import fuse_parts
from mcp_memalpha.tokens import count_tokens

LONG = (
    "Melanie: Thanks for asking! The kids are back at school and the house is quiet again. "
    "I finally finished the lake sunrise painting last week. "
    "We also adopted a second cat, her name is Bailey. "
    "Work has been busy but I'm trying to keep weekends free."
)


def no_meaning(sentences: list[str]) -> list[float]:
    return [0.0] * len(sentences)


def test_a_long_memory_shows_its_sentences_that_answer_the_query() -> None:
    shown = excerpt(LONG, "What did Melanie paint?", 20, no_meaning)
    assert shown is not None and shown.startswith("Melanie: ")  # who said it stays
    assert f"{ELLIPSIS} I finally finished the lake sunrise painting last week. {ELLIPSIS}" in shown
    assert "Bailey" not in shown and "school" not in shown
    assert count_tokens(shown) <= 20 + 2  # the budget, plus the "…" marks
    cat = excerpt(LONG, "What is the name of Melanie's cat?", 20, no_meaning)
    assert cat is not None and "her name is Bailey" in cat and "sunrise" not in cat


def test_sentences_keep_their_order_and_fill_the_budget() -> None:
    shown = excerpt(LONG, "painting cat", 35, no_meaning)
    assert shown is not None
    assert shown.index("sunrise") < shown.index("Bailey")  # text order, not rank order
    assert excerpt(LONG, "painting", 1000, no_meaning) is None  # fits whole: no excerpt


def test_the_first_hits_get_twice_the_room_of_the_rest() -> None:
    """The likeliest answers are read at more length: the same memory at rank 1 keeps both the
    sentences the query asks about, at rank 5 only the best one."""
    budgets = rank_budgets(LEAD_HITS + 2, 18)
    assert budgets == [36] * LEAD_HITS + [18, 18]
    shown = excerpts([LONG] * (LEAD_HITS + 1), "painting cat", budgets, no_meaning)
    first, fifth = shown[0], shown[LEAD_HITS]
    assert first is not None and "sunrise" in first and "Bailey" in first
    assert fifth is not None and "sunrise" in fifth and "Bailey" not in fifth
    assert count_tokens(fifth) <= 18 + 2 < count_tokens(first) <= 36 + 3


def test_meaning_breaks_ties_between_sentences_without_shared_words() -> None:
    def prefers_work(sentences: list[str]) -> list[float]:
        return [1.0 if "Work" in s else 0.0 for s in sentences]

    shown = excerpt(LONG, "How is her job?", 25, prefers_work)
    assert shown is not None and "Work has been busy" in shown


@pytest.mark.parametrize("budget", [1, 3, 8])
def test_one_long_sentence_is_cut_at_a_word_never_dropped(budget: int) -> None:
    sentence = "Jon: " + " ".join(f"word{i}" for i in range(200))
    shown = excerpt(sentence, "word7", budget, no_meaning)
    assert shown is not None and shown.startswith("Jon") and shown.endswith(ELLIPSIS)
    assert count_tokens(shown) < count_tokens(sentence)
    assert shown.removesuffix(ELLIPSIS).split(" ")[-1] in sentence.split(" ")  # cut between words


def test_a_question_about_two_names_is_asked_of_each() -> None:
    assert query_parts("How do Jon and Gina both like to destress?") == [
        "How do Jon like to destress?",
        "How do Gina like to destress?",
    ]
    assert query_parts("Which city have both Jean and John visited?") == [
        "Which city have Jean visited?",
        "Which city have John visited?",
    ]
    assert query_parts("Where is the cat? When is the party?") == ["Where is the cat?", "When is the party?"]
    many = " ".join(f"Question {i}?" for i in range(MAX_PARTS + 1))  # each part costs a search
    chunk = "Jon: Did you dance today? Gina: Yes, with Ana and Maria. " * 5  # a passage, not questions
    for single in ("What did Melanie and her kids make?", "Jon and Gina met when?", "pottery class", many, chunk):
        assert query_parts(single) == [single]


def test_parts_are_fused_so_each_part_leads_with_its_best() -> None:
    jon = [("j1", 9.0), ("j2", 8.0), ("shared", 1.0)]
    gina = [("g1", 3.0), ("shared", 2.9), ("g2", 1.0)]  # lower raw scores: a shorter part
    fused = [item for item, _ in fuse_parts([jon, gina])]
    assert set(fused[:2]) == {"j1", "g1"}
    assert fused.index("shared") < fused.index("j2")  # 2.9/3 beats 8/9
    assert fuse_parts([[], jon])[0] == ("j1", 1.0)


def test_content_words_ignore_stop_words_and_endings() -> None:
    assert content_words("What did she paint?") == content_words("She painted it") == {"paint"}
