"""The rollout environment over the real tools: sandboxes, views, readers, episodes with scripted
completions in the Memalpha wire format, and a real llama.cpp curator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp_memalpha.policy.prompt import statements
from mcp_memalpha.training.data import QA, Instance, locomo_instances
from mcp_memalpha.training.environment import Episode, chunk_timestamp
from mcp_memalpha.training.reader import (
    ExtractiveReader,
    LongContextView,
    MemoryView,
    RagView,
    passages,
    trim_to_tokens,
)
from mcp_memalpha.training.sandbox import Sandbox, tool_defs

from mcp_memalpha.tokens import count_tokens
from tests.conftest import shared_data_missing

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"

CHUNKS = [
    "[Dialogue at 1:56 pm on 8 May, 2023]\n"
    "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.\n"
    "Melanie: Wow! I'm painting a lake sunrise these days.",
    "[Dialogue at 1:14 pm on 25 May, 2023]\n"
    "Caroline: I'm keen on counseling or working in mental health.\n"
    "Melanie: I ran a charity race for mental health last Saturday.",
]
INSTANCE = Instance(
    "toy",
    CHUNKS,
    [QA("When did Caroline go to the support group?", "7 May 2023", 2), QA("What did Melanie run?", "charity race", 4)],
    "locomo",
)


def memalpha_calls(calls: list[tuple[str, dict[str, object]]]) -> str:
    return "\n".join(f"✿FUNCTION✿: {name}\n✿ARGS✿: {json.dumps(args)}" for name, args in calls)


def copy_everything(messages: list[dict[str, str]]) -> str:
    """A scripted policy: every statement of the chunk as an episodic insert."""
    chunk = messages[-1]["content"].split("<new_chunk>\n", 1)[1].split("\n</new_chunk>", 1)[0]
    episodic = [("new_memory_insert", {"memory_type": "episodic_memory", "content": s}) for s in statements(chunk)]
    return memalpha_calls(episodic)


def test_chunk_timestamps_from_the_headers_datasets_use() -> None:
    assert chunk_timestamp(CHUNKS[0]) == "1:56 pm on 8 May, 2023"
    assert chunk_timestamp("[Dialogue between User and Assistant on 2024-01-03 00:00]\nhi") == "2024-01-03 00:00"
    assert chunk_timestamp("[Dialogue at timestamp 2023/05/25 (Thu) 17:08]") == "2023/05/25 17:08"
    assert chunk_timestamp("no header here") is None


def test_sandbox_runs_the_real_tools_and_reports_refusals(tmp_path: Path) -> None:
    with Sandbox(root=tmp_path) as sandbox:
        ok = sandbox.execute("new_memory_insert", {"memory_type": "semantic", "content": "Caroline likes pottery."})
        refused = sandbox.execute(
            "memory_update", {"memory_type": "semantic", "memory_id": "s-zzzzzz", "new_content": "x"}
        )
        unknown = sandbox.execute("memory_teleport", {})
        assert ok.ok and ok.output["memory_id"].startswith("s-")
        assert not refused.ok and "s-zzzzzz" in (refused.error or "")
        assert not unknown.ok and "is not one of your tools" in (unknown.error or "")  # the server's adapter
        core, items = sandbox.contents()
        assert (core, items) == ("", ["Caroline likes pottery."])
        assert sandbox.memory_tokens() == count_tokens("Caroline likes pottery.")
        assert sandbox.calls == 3
        folder = sandbox.folder
    assert not folder.exists()  # removed on close


def test_tool_defs_come_from_the_one_definition() -> None:
    from mcp_memalpha.tools import TOOLS_BY_NAME

    defs = {d.name: d for d in tool_defs()}
    assert set(defs) == {"new_memory_insert", "memory_update", "memory_delete", "search_memory"}
    assert defs["search_memory"].parameters == TOOLS_BY_NAME["search_memory"].input_schema()


def test_trim_and_passages_respect_token_budgets() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    head, tail = trim_to_tokens(text, 20), trim_to_tokens(text, 20, keep="tail")
    assert count_tokens(head) <= 20 and text.startswith(head)
    assert count_tokens(tail) <= 20 and text.endswith(tail)
    found = passages(CHUNKS, max_tokens=30)
    assert all(p.startswith("[Dialogue at") for p in found)  # every passage keeps its date
    assert sum(p.count("\n") for p in found) == 4  # every line kept once


def test_views_under_one_budget(tmp_path: Path) -> None:
    question = "Which race did Melanie run?"
    tail = LongContextView(CHUNKS, budget=15).context(question)
    assert "charity race" in tail and "support group" not in tail
    with Sandbox(root=tmp_path) as raw:
        for passage in passages(CHUNKS, max_tokens=30):
            raw.call("new_memory_insert", {"memory_type": "semantic", "content": passage})
        found = RagView(raw, budget=40).context(question)
        assert "charity race" in found and count_tokens(found) <= 40


def test_episode_with_a_scripted_generator_builds_memory_through_the_tools() -> None:
    with Episode(INSTANCE) as episode:
        seen = []

        def generate(messages: list[dict[str, str]]) -> str:
            seen.append(messages)
            return copy_everything(messages)

        episode.run(generate)
        assert len(seen) == 2  # one generation per chunk (max_steps=1 by default, as in the paper)
        assert "✿FUNCTION✿" in seen[0][0]["content"]  # the policy's own memalpha prompt
        assert "LGBTQ support group" in seen[1][0]["content"]  # chunk 2 sees chunk 1's memories
        assert episode.calls == 4 and all(r.ok for s in episode.steps for r in s.records)
        # the chunk's date became the event time of each episodic insert
        assert episode.steps[0].records[0].output["event_time"] == "2023-05-08T13:56:00"
        score = episode.score(budget=60)
    assert score.qa_scores == [1.0, 1.0]  # "yesterday = 7 May 2023" is resolved in the hit's text
    assert score.executed == [1.0, 1.0]
    assert 0.0 <= score.compression < 0.2  # copying everything compresses little
    assert score.rewards[0] == pytest.approx(1.0 + 1.0 + 0.05 * score.compression + 0.1 * score.type_fit[0])


def test_episode_scores_an_idle_policy_at_zero() -> None:
    with Episode(INSTANCE) as episode:
        episode.run(lambda messages: "I will remember that.")
        score = episode.score()
    assert score.qa_scores == [0.0, 0.0]
    assert score.executed == [0.0, 0.0] and score.type_fit == [0.0, 0.0]
    assert score.compression == 1.0 and score.memory_tokens == 0
    assert score.rewards == [pytest.approx(0.05), pytest.approx(0.05)]


def tool_calls(calls: list[tuple[str, dict[str, object]]]) -> str:
    return "\n".join(f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>" for name, args in calls)


def test_refused_and_garbled_calls_lower_r2_and_multi_step_shows_results() -> None:
    with Episode(INSTANCE, wire_format="tool_call", limits=_limits(max_steps=2)) as episode:
        episode.prompt()
        first = (
            tool_calls(
                [
                    ("memory_update", {"memory_type": "semantic", "memory_id": "s-zzzzzz", "new_content": "x y z"}),
                    ("new_memory_insert", {"memory_type": "semantic", "content": "Caroline likes support groups."}),
                ]
            )
            + "\n<tool_call>not json at all</tool_call>"
        )
        records = episode.submit(first)
        assert [r.ok for r in records] == [False, True, False]
        assert episode.chunk == 0  # a refused call: the results are shown back for a second step
        messages = episode.prompt()
        assert messages[-1]["role"] == "user" and "<tool_response>" in messages[-1]["content"]
        episode.submit("")
        assert episode.chunk == 1
        episode.submit("")
        score = episode.score()
    assert score.executed == [pytest.approx(1 / 3), 0.0]


def test_the_memalpha_format_memorizes_a_chunk_in_one_generation() -> None:
    with Episode(INSTANCE, limits=_limits(max_steps=3)) as episode:
        refused = memalpha_calls(
            [("memory_update", {"memory_type": "semantic_memory", "memory_id": "zzzz", "new_content": "x"})]
        )
        records = episode.submit(refused)
        assert [r.ok for r in records] == [False] and episode.chunk == 1  # results are never shown back


def test_an_extractive_episode_passes_over_a_chunk_without_statements() -> None:
    instance = Instance("headers", ["[Dialogue at 1:56 pm on 8 May, 2023]\n[Caroline: moved]", CHUNKS[1]], [], "locomo")
    with Episode(instance, wire_format="json") as episode:
        assert "charity race" in episode.prompt()[-1]["content"]  # the first chunk has nothing to do
        assert episode.chunk == 1 and episode.results[0].calls == []


def _limits(**changes: int) -> object:
    from mcp_memalpha.policy.curator import Limits

    return Limits(**changes)


@pytest.mark.skipif(shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo")
def test_a_real_llama_cpp_curator_drives_an_episode() -> None:
    from mcp_memalpha.policy import Limits, load_curator

    instance = locomo_instances(LOCOMO, sessions_per_instance=1)[0]
    instance = Instance(instance.instance_id, instance.chunks[:1], instance.questions[:3], "locomo")
    curator = load_curator("default", tools=tool_defs(), limits=Limits(max_calls=4, max_new_tokens=160), threads=2)
    with Episode(instance, wire_format=curator.format_name) as episode:
        episode.run_curator(curator)
        score = episode.score(reader=ExtractiveReader())
        inserted = [r for r in episode.chunk_records(0) if r.ok and r.name == "new_memory_insert"]
    assert inserted, "the extractive curator stores statements of the chunk"
    assert score.executed[0] > 0.5
    assert score.memory_tokens > 0 and score.compression < 1.0


def test_memory_view_reads_core_first(tmp_path: Path) -> None:
    with Sandbox(root=tmp_path) as sandbox:
        sandbox.call("memory_update", {"memory_type": "core", "new_content": "Caroline is a counselor."})
        sandbox.call("new_memory_insert", {"memory_type": "semantic", "content": "Melanie ran a charity race."})
        context = MemoryView(sandbox, budget=100).context("What did Melanie run?")
    assert context.splitlines() == ["Caroline is a counselor.", "Melanie ran a charity race."]
