"""Re-ranking the head of a search by what its memories say: questions and whose words."""

from __future__ import annotations

from mcp_memalpha import CallContext, Memory
from mcp_memalpha.rerank import label_of, only_asks, rerank


def test_a_memory_that_only_asks_is_told_from_one_that_says_something() -> None:
    assert only_asks("Melanie: Wow, what a fun moment! What's the band?")
    assert only_asks("What kind of counseling do you want to pursue?")
    assert not only_asks("Melanie: It was Matt Patterson, he is so talented! What's up with you?")
    assert not only_asks("Caroline: I'm keen on counseling or working in mental health.")
    assert not only_asks("")


def test_the_label_is_the_leading_name() -> None:
    assert label_of("Caroline: I went to the support group.") == "Caroline"
    assert label_of("I went to the support group.") == ""
    assert label_of("Caroline: I went.\nCaroline: It was great.") == "Caroline"
    assert label_of("Caroline: I went.\nMelanie: How was it?") == ""  # a passage of two speakers


def test_the_named_speakers_statements_lead_then_the_others_then_questions() -> None:
    head = [
        ("Melanie: Sounds great! What kind of counseling do you want to pursue?", 1.0),
        ("Melanie: Counseling is a good career for you, Caroline.", 0.9),
        ("Caroline: I'm keen on counseling or working in mental health.", 0.85),
        ("Caroline works as a counselor at the LGBTQ center.", 0.7),  # no label: not moved by it
    ]
    order = rerank("What career has Caroline chosen?", head)
    assert [index for index, _ in order] == [2, 3, 1, 0]
    assert [score for _, score in order] == sorted((score for _, score in order), reverse=True)
    # a query naming no label of the head moves only the question (1.0 - 0.2)
    assert [index for index, _ in rerank("Which career is a good one?", head)] == [1, 2, 0, 3]
    # the name must be written as the label is: "mel" is not "Melanie", "caroline" not "Caroline"
    assert [index for index, _ in rerank("what career has caroline chosen?", head)] == [1, 2, 0, 3]
    assert rerank("anything", []) == []


def test_scores_on_any_scale_move_by_a_share_of_the_best() -> None:
    bm25 = [("Jon: What's your favourite dance?", 12.0), ("Gina: Contemporary is my favourite dance.", 10.0)]
    assert [index for index, _ in rerank("Which dance does Gina like?", bm25)] == [1, 0]
    assert [index for index, _ in rerank("favourite dance?", bm25)] == [1, 0]  # 12 - 0.2 * 12 < 10


def test_search_puts_the_named_speakers_answer_before_the_friends_question(memory: Memory, ctx: CallContext) -> None:
    turns = [
        "Jon: Cool, Gina! I love all dances, but contemporary is my top pick. What's your favourite style of dance?",
        "Gina: Contemporary dance is so expressive and graceful - it really speaks to me.",
        "Jon: Which style of dance do you teach at the studio, Gina?",
        "Gina: I had a busy week at the store.",
    ]
    for turn in turns:
        memory.insert(ctx, "episodic", turn, "2023-05-08")
    hits = memory.search(ctx, "What is Gina's favourite style of dance?", top_k=2).hits
    assert hits[0].item.content == turns[1]
    assert hits[0].score >= hits[1].score
    before = memory.search(CallContext(), "What is the favourite style of dance?", top_k=4).hits
    assert before[0].item.content != turns[2]  # a question alone does not come first
