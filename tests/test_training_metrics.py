"""mcp_memalpha.training.metrics: each metric on answers in the shapes the data sources use."""

from __future__ import annotations

import pytest
from mcp_memalpha.training.data import QA
from mcp_memalpha.training.metrics import (
    boxed_em,
    boxed_label,
    keyword_hit,
    locomo_f1,
    locomo_normalize,
    metric_for,
    sub_em,
    token_f1,
)


def test_sub_em_is_a_lowercased_substring_and_scores_shares_of_parts() -> None:
    assert sub_em("The capital is PARIS, France.", "Paris") == 1.0
    assert sub_em("The capital is Lyon.", "Paris") == 0.0
    assert sub_em("Seine and Loire", "seine; rhone; loire; garonne") == 0.5
    assert sub_em("anything", " ; ") == 0.0


def test_boxed_digit_exact_match() -> None:
    assert boxed_label(r"I think \boxed{3} then \boxed{ 12 }") == "12"
    assert boxed_em(r"label: \boxed{07}", "7") == 1.0
    assert boxed_em(r"\boxed{4}", "label 5") == 0.0
    assert boxed_em("7", "7") == 0.0  # no box, no credit
    assert boxed_em(r"\boxed{none}", "7") == 0.0


def test_keyword_hit_ratio_from_lists_and_strings() -> None:
    summary = "Elizabeth rejects Darcy's first proposal; later they marry at Pemberley."
    assert keyword_hit(summary, ["Darcy", "proposal", "Wickham", "Pemberley"]) == 0.75
    assert keyword_hit(summary, "darcy; wickham") == 0.5
    assert keyword_hit(summary, "darcy, elizabeth") == 1.0
    assert keyword_hit(summary, []) == 0.0


def test_locomo_normalization_and_stemmed_f1() -> None:
    assert locomo_normalize("The Sunday before 25 May, 2023!") == "sunday before 25 may 2023"
    assert token_f1("7 May 2023", "7 May 2023") == 1.0
    # stemming: "paintings" and "painting" meet; precision is 1 of 5 words
    assert token_f1("She loves paintings of sunsets", "painting") == pytest.approx(2 * (1 / 5) / (1 / 5 + 1))
    assert token_f1("", "Paris") == 0.0


def test_locomo_categories() -> None:
    # multi-hop: each gold part gets the best F1 over the prediction's parts, then the mean
    assert locomo_f1("pottery, camping", "pottery, camping, painting", category=1) == pytest.approx(2 / 3)
    # open-domain: only the part before ';' counts
    assert locomo_f1("Likely yes", "Likely yes; she likes it", category=3) == 1.0
    assert locomo_f1("Likely yes", "Likely yes; she likes it", category=4) < 1.0


def test_dispatch_per_data_source() -> None:
    qa = QA("q", "Paris")
    assert metric_for("squad").name == "subem"
    assert metric_for("HotpotQA").name == "subem"
    assert metric_for("trec-coarse").name == "boxed_em"
    assert metric_for("banking77").name == "boxed_em"
    assert metric_for("booksum").name == "keyword_hit"
    assert metric_for("locomo").name == "locomo_f1"
    assert metric_for("something_new").name == "subem"
    assert metric_for("squad").score("it is paris", qa) == 1.0


def test_extractive_mode_turns_precision_metrics_into_recall() -> None:
    context = "[8 May 2023] Caroline: I went to a LGBTQ support group yesterday. (yesterday = 7 May 2023)"
    qa = QA("When did Caroline go to the support group?", "7 May 2023", 2)
    assert metric_for("locomo").score(context, qa) < 0.5  # F1 drowns in the context's other words
    recall = metric_for("locomo", extractive=True)
    assert recall.name == "answer_token_recall"
    assert recall.score(context, qa) == 1.0
    assert metric_for("squad", extractive=True).name == "subem"  # already recall-type
