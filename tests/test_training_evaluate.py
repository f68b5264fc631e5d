"""mcp_memalpha.training.evaluate and `mcp-memalpha eval`: baselines and a policy in one harness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mcp_memalpha.training.baselines import build_flat, flat_paragraph
from mcp_memalpha.training.data import QA, Instance, truncate
from mcp_memalpha.training.evaluate import EvalConfig, evaluate, generator_builder, plot, render_markdown

from mcp_memalpha.cli import main
from mcp_memalpha.tokens import count_tokens
from tests.conftest import shared_data_missing

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"

CHUNKS = [
    "[Dialogue at 1:56 pm on 8 May, 2023]\nCaroline: Hi!\nCaroline: I adopted a dog named Biscuit.\n"
    + "\n".join(f"Melanie: filler number {i}." for i in range(30)),
    "[Dialogue at 1:14 pm on 25 May, 2023]\n"
    + "\n".join(f"Melanie: more filler number {i} today." for i in range(30))
    + "\nMelanie: I ran a charity race.",
]
INSTANCE = Instance(
    "toy",
    CHUNKS,
    [
        QA("What is the name of Caroline's dog?", "Biscuit", 4, (0,)),
        QA("What did Melanie run?", "charity race", 4, (1,)),
    ],
    "locomo",
)


def keep_names(messages: list[dict[str, str]]) -> str:
    """A scripted policy that stores only the statements with a capitalized name after the speaker."""
    chunk = messages[-1]["content"]
    lines = [line for line in chunk.splitlines() if ("Biscuit" in line or "charity" in line)]
    return "\n".join(
        "✿FUNCTION✿: new_memory_insert\n✿ARGS✿: " + json.dumps({"memory_type": "semantic_memory", "content": line})
        for line in lines
    )


def test_flat_paragraph_keeps_informative_statements_within_capacity() -> None:
    kept = flat_paragraph([], CHUNKS[0], capacity=40)
    assert any("Biscuit" in s for s in kept)
    assert not any(s.endswith("Caroline: Hi!") for s in kept)  # adds no content word
    assert sum(count_tokens(s) for s in kept) <= 40
    built = build_flat(INSTANCE, budget=60)
    try:
        assert 0 < built.memory_tokens <= 60
    finally:
        built.close()


def test_harness_ranks_a_selective_policy_above_the_tail_of_the_input(tmp_path: Path) -> None:
    result = evaluate(
        [INSTANCE],
        baselines=["long-context", "rag", "flat"],
        policies={"scripted": generator_builder(keep_names)},
        config=EvalConfig(budget=40),
    )
    assert result.methods == ["long-context", "rag", "flat", "scripted"]
    assert result.score("scripted", "locomo") == 1.0
    assert result.score("long-context", "locomo") == 0.5  # only the race is in the last 40 tokens
    assert result.tokens("scripted") < result.tokens("rag")
    table = render_markdown(result, reader="extractive", budget=40)
    assert "| scripted | 1.000 |" in table
    assert plot(result, tmp_path / "chart.png").stat().st_size > 1000


def test_truncate_keeps_questions_answerable_from_the_kept_chunks() -> None:
    short = truncate(INSTANCE, max_chunks=1)
    assert short.chunks == CHUNKS[:1]
    assert [q.answer for q in short.questions] == ["Biscuit"]
    assert truncate(INSTANCE, max_questions=1).questions == INSTANCE.questions[:1]


@pytest.mark.skipif(shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo")
def test_eval_command_on_locomo_writes_table_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "eval.md"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--data",
            str(LOCOMO),
            "--sessions-per-instance",
            "2",
            "--limit",
            "2",
            "--max-questions",
            "5",
            "--baselines",
            "long-context,rag",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = out.read_text()
    assert "| long-context |" in table and "| rag |" in table
    assert out.with_suffix(".png").exists()


def test_the_server_cli_does_not_import_training_until_a_training_command_runs() -> None:
    code = "import sys, mcp_memalpha.cli; print([m for m in sys.modules if m.startswith('mcp_memalpha.training')])"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def keep_nothing(messages: list[dict[str, str]]) -> str:
    return ""


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    from mcp_memalpha.training.evaluate import bootstrap_interval

    values = [0.1, 0.2, 0.0, 0.3, 0.15, 0.25, 0.05, 0.2]
    interval = bootstrap_interval(values, resamples=1000, seed=1)
    assert interval.mean == pytest.approx(sum(values) / len(values))
    assert interval.low < interval.mean < interval.high
    assert interval.low >= 0.0
    assert interval.high <= 0.3
    assert bootstrap_interval(values, resamples=1000, seed=1) == interval  # reproducible
    assert bootstrap_interval([0.2] * 5).low == bootstrap_interval([0.2] * 5).high == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_interval([])


def test_paired_difference_of_two_policies_per_window_and_category() -> None:
    from mcp_memalpha.training.evaluate import paired, render_paired

    other = Instance("toy-2", CHUNKS[:1], [QA("What is the name of Caroline's dog?", "Biscuit", 1, (0,))], "locomo")
    result = evaluate(
        [INSTANCE, other],
        baselines=[],
        policies={"none": generator_builder(keep_nothing), "scripted": generator_builder(keep_names)},
        config=EvalConfig(budget=40),
    )
    comparison = paired(result, "scripted", "none", resamples=200)
    assert comparison.overall.n == 2 and comparison.overall.mean == pytest.approx(1.0)
    assert comparison.overall.low == pytest.approx(1.0)  # every window gained all of it
    assert set(comparison.by_category) == {1, 4}
    assert comparison.by_category[1].n == 1 and comparison.by_category[4].n == 1
    assert comparison.tokens[0] > comparison.tokens[1] == 0
    table = render_paired(comparison)
    assert "| all | 2 | +1.000 | [+1.000, +1.000] |" in table and "| category 4 |" in table
    with pytest.raises(ValueError, match="common window"):
        paired(result, "scripted", "flat")


def test_conversations_used_for_training_are_refused_or_dropped(tmp_path: Path) -> None:
    from mcp_memalpha.training.evaluate import held_out, refuse_trained, trained_conversations

    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"holdout": ["conv-26"], "trained_on": ["conv-30", "conv-41"]}))
    assert trained_conversations(run) == trained_conversations(run / "final") == {"conv-30", "conv-41"}
    assert trained_conversations(tmp_path) == set()
    seen = Instance("conv-30-s1-2", CHUNKS, INSTANCE.questions, "locomo", {"sample_id": "conv-30"})
    unseen = Instance("conv-26-s1-2", CHUNKS, INSTANCE.questions, "locomo", {"sample_id": "conv-26"})
    refuse_trained([unseen], {"conv-30", "conv-41"})
    with pytest.raises(ValueError, match="conv-30 were used for training"):
        refuse_trained([unseen, seen], {"conv-30", "conv-41"})
    assert held_out([unseen, seen], {"conv-30", "conv-41"}) == [unseen]


@pytest.mark.skipif(shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo")
def test_eval_command_refuses_training_conversations_unless_forced_or_held_out(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"trained_on": ["conv-26"]}))
    args = ["eval", "--data", str(LOCOMO), "--sessions-per-instance", "2", "--limit", "1", "--max-questions", "3"]
    args += ["--baselines", "long-context", "--trained-on", str(run)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "conv-26 were used for training" in refused.output
    forced = CliRunner().invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "| long-context |" in forced.output
    # --held-out drops the trained conversation's windows instead: the first 20 two-session
    # windows are conv-26's 10 and conv-30's 10
    args[args.index("--limit") + 1] = "20"
    held_out = CliRunner().invoke(main, [*args, "--held-out"])
    assert held_out.exit_code == 0, held_out.output
    assert "'instances': 10," in held_out.output and "| long-context |" in held_out.output
