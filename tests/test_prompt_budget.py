"""The curator's prompt fits its context by construction (issue 16, finding 9): a core within its
bounds that is many model tokens, eight 7,900-character related memories, a chunk near the context.
Each used to fail every memorize with "prompt: N tokens leave no room in the C-token context"; now
the memory shown is cut (only when over) and the chunk split, counted by the embedded SmolLM2 GGUF's
own tokenizer through llama.cpp, and the job completes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_memalpha.policy import Curator, Limits, load_curator
from mcp_memalpha.policy.budget import cap_for, split_chunk
from mcp_memalpha.policy.formats import CUT_MARKER
from mcp_memalpha.policy.memalpha import TRUNCATED

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.curation import CurationWorker, curator_tools, make_execute
from mcp_memalpha.jobs import JobQueue
from mcp_memalpha.tools import TOOLS_BY_NAME

MAX_CHUNK = 512  # the curator's context: 2048 + 2 x 512 + 2048 = 5120 tokens
CHUNK = """Maya: I started a new job as a data engineer at a solar energy company on Monday.
Leo: Congrats! Are you still living in Porto?
Maya: Yes, and I adopted a cat named Pixel last weekend."""
# 40 WordPiece tokens (a word of 100+ characters is one [UNK]) within core's 4,096 characters, and
# 12,120 tokens of SmolLM2's byte-level BPE: more than the whole context.
HUGE_CORE = " ".join(["🦜" * 101] * 40)[:4096]


def garden_note(i: int) -> str:
    """An ordinary memory of about 7,900 characters on one topic (Maya's garden)."""
    sentences = [
        f"In week {w} of note {i}, Maya watered the tomatoes, pruned the roses and wrote down how the "
        f"basil, the peppers and the beans in her Porto garden had grown since week {w - 1}."
        for w in range(1, 200)
    ]
    return " ".join(sentences)[:7900]


@pytest.fixture(scope="module")
def curator() -> Curator:
    limits = Limits(max_chunk_tokens=MAX_CHUNK, max_new_tokens=128)
    return load_curator("default", tools=curator_tools(), limits=limits, threads=2)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", policy="default", policy_max_chunk_tokens=MAX_CHUNK)


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    with Memory(settings) as opened:
        yield opened


def memorize(memory: Memory, curator: Curator, chunk: str) -> dict[str, Any]:
    """Queue `chunk` as the memorize tool does, run it with the real curator; the job as stored."""
    ctx = CallContext()
    job, _ = JobQueue(memory.ledger, memory.settings).enqueue(ctx, chunk, "8 May 2023")
    worker = CurationWorker(memory, lambda: curator)
    assert worker._load_curator() and worker.run_once()
    done, _ = JobQueue(memory.ledger, memory.settings).status(ctx, job.id)
    assert done.state == "done", done.error
    assert done.result is not None
    return done.result


def assert_within_budget(curator: Curator, result: dict[str, Any]) -> None:
    limit = curator.generator.llm.n_ctx() - curator.reserve()
    assert result["prompts"] and all(p["tokens"] <= limit for p in result["prompts"]), (result["prompts"], limit)


def test_a_core_of_more_tokens_than_the_context_is_cut_and_memorize_completes(memory: Memory, curator: Curator) -> None:
    memory.set_core(CallContext(), HUGE_CORE)  # within core's bounds: 40 WordPiece tokens, 4,079 characters
    assert curator.generator.count_tokens(HUGE_CORE) > curator.generator.llm.n_ctx()
    result = memorize(memory, curator, CHUNK)
    assert_within_budget(curator, result)
    assert len(result["cuts"]) == 1 and result["cuts"][0]["tokens_before"] > curator.generator.llm.n_ctx()
    assert result["calls"] and all(call["ok"] for call in result["calls"])


def test_eight_long_related_memories_are_cut_to_fit_and_memorize_completes(memory: Memory, curator: Curator) -> None:
    ctx = CallContext()
    for i in range(8):
        memory.insert(ctx, "semantic", garden_note(i))
    chunk = "Maya: My garden in Porto is doing great, the tomatoes and the basil have grown a lot this week."
    result = memorize(memory, curator, chunk)
    assert_within_budget(curator, result)
    assert len(result["cuts"]) == 1 and result["cuts"][0]["cap"] > 0  # each memory still shows its start


def test_a_chunk_longer_than_the_context_is_split_and_memorize_completes(memory: Memory, curator: Curator) -> None:
    lines = [f"Maya: day {d} of my trip {'🦜' * 60} went well." for d in range(30)]  # ~5,400 tokens, ~300 WordPiece
    chunk = "\n".join(lines)
    assert curator.generator.count_tokens(chunk) > curator.generator.llm.n_ctx() - curator.reserve()
    result = memorize(memory, curator, chunk)  # accepted by memorize: within policy_max_chunk_tokens WordPiece
    assert_within_budget(curator, result)
    assert result["parts"] >= 2 and result["cuts"] == []
    stored = {item.content for item in memory.iter_items("default")}
    assert stored <= set(lines)  # extractive: every memory is one of the chunk's lines, whichever part it was in


def test_what_is_shown_is_cut_only_when_over_and_the_prompt_is_the_formats_otherwise(
    memory: Memory, curator: Curator
) -> None:
    execute = make_execute(memory, CallContext(source="policy", job_id="j-test"), allowed=tuple(TOOLS_BY_NAME))
    memory.set_core(CallContext(), "Maya is a data engineer in Porto.")
    memory.insert(CallContext(), "semantic", "Maya has a cat named Pixel.")
    normal = curator.session(CHUNK, "8 May 2023", execute)
    assert normal.result.cuts == []
    assert normal.messages == curator.format.messages(curator.tools, normal.context)  # as the format writes it
    assert "Maya is a data engineer in Porto." in normal.messages[-1]["content"]

    memory.set_core(CallContext(), HUGE_CORE)
    cut = curator.session(CHUNK, "8 May 2023", execute)
    assert curator.budget().count(cut.messages) <= curator.budget().limit
    assert cut.context.core.endswith(CUT_MARKER) and cut.context.core.startswith("🦜")
    assert "Maya has a cat named Pixel." in cut.messages[-1]["content"]  # a short memory stays whole


def test_the_memalpha_prompt_is_as_trained_unless_over_then_core_is_cut_with_mem_alphas_marker(
    memory: Memory,
) -> None:
    memalpha = load_curator(
        "default", tools=curator_tools(), wire_format="memalpha", limits=Limits(max_chunk_tokens=MAX_CHUNK), threads=2
    )
    execute = make_execute(memory, CallContext(source="policy", job_id="j-test"), allowed=tuple(TOOLS_BY_NAME))
    memory.set_core(CallContext(), "Maya is a data engineer in Porto.")
    normal = memalpha.session(CHUNK, None, execute)
    assert normal.result.cuts == [] and normal.messages == memalpha.format.messages(memalpha.tools, normal.context)

    memory.set_core(CallContext(), HUGE_CORE)
    for i in range(5):
        memory.insert(CallContext(), "episodic", garden_note(i), "2023-05-0" + str(i + 1))
    cut = memalpha.session(CHUNK, None, execute)
    budget = memalpha.budget()
    assert budget.count(cut.messages) <= budget.limit
    (entry,) = cut.result.cuts
    assert cut.context.core.endswith(TRUNCATED.format(limit=entry["cap"]))
    assert "(Only show the most recent 5 out of 5 memories)" in cut.messages[0]["content"]  # the ids still shown


def test_the_cap_keeps_short_texts_whole_and_cuts_the_long_ones_equally() -> None:
    assert cap_for([10, 1000, 2000], 10 + 2 * 105, marker=5) == 100
    assert cap_for([10, 20], 30, marker=5) == 20  # everything fits whole
    assert cap_for([10, 1000], 9, marker=5) is None  # not even the markers fit: nothing is shown


def test_a_long_line_is_split_in_windows_and_nothing_is_lost(curator: Curator) -> None:
    text = "short line\n" + "🦜" * 400 + "\nlast line"
    parts = split_chunk(text, 100, curator.generator)
    assert all(curator.generator.count_tokens(part) <= 100 for part in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")
