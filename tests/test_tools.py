"""The tool definitions themselves: the Mem-α contract, argument checking, `execute`."""

from __future__ import annotations

import json

import pytest
from mcp_memalpha.training.rewards import HeuristicTypeJudge

from mcp_memalpha import CallContext, InvalidArgument, MemalphaError, Memory
from mcp_memalpha.tools import CURATION_TOOLS, MEMALPHA_TOOLS, TOOLS, TOOLS_BY_NAME, execute
from mcp_memalpha.vocabulary import memory_type_name
from tests.conftest import BOTH_BACKENDS


def test_memalpha_tool_names_and_arguments_are_kept() -> None:
    """Memalpha-4B calls these exact names with these exact argument names."""
    expected = {
        "new_memory_insert": {"memory_type", "content"},
        "memory_update": {"memory_type", "new_content", "memory_id"},
        "memory_delete": {"memory_type", "memory_id"},
        "search_memory": {"memory_type", "query", "search_method"},
    }
    for name in MEMALPHA_TOOLS:
        properties = set(TOOLS_BY_NAME[name].input_schema()["properties"])
        assert expected[name] <= properties, name
    insert_required = set(TOOLS_BY_NAME["new_memory_insert"].input_schema()["required"])
    assert insert_required == {"memory_type", "content"}  # every addition is optional
    assert set(TOOLS_BY_NAME["memory_update"].input_schema()["required"]) == {"memory_type", "new_content"}
    assert set(TOOLS_BY_NAME["search_memory"].input_schema()["required"]) == {"query"}


def test_every_tool_has_description_and_schemas() -> None:
    for tool in (*TOOLS, *CURATION_TOOLS):
        assert len(tool.description) > 40
        schema = tool.input_schema()
        for name, prop in schema.get("properties", {}).items():
            assert "description" in prop or "anyOf" in prop or "$ref" in prop, (tool.name, name)
        assert tool.result.model_json_schema()["type"] == "object"


@BOTH_BACKENDS
def test_execute_runs_a_memalpha_transcript(memory: Memory) -> None:
    """A transcript as Memalpha-4B emits it (suffixes, core update, search) runs unchanged."""
    policy = CallContext(source="policy", job_id="job-1")
    calls = [
        ("memory_update", {"memory_type": "core_memory", "new_content": "The user is Ana, a chef in Porto."}),
        ("new_memory_insert", {"memory_type": "semantic_memory", "content": "Ana's restaurant serves seafood."}),
        (
            "new_memory_insert",
            {"memory_type": "episodic_memory", "content": "At 2024-01-03, Ana opened her restaurant."},
        ),
        ("search_memory", {"memory_type": "semantic_memory", "query": "restaurant", "search_method": "text-embedding"}),
    ]
    results = [execute(memory, policy, name, args) for name, args in calls]
    assert results[0]["memory_type"] == "core" and results[0]["version"] == 1
    assert results[3]["results"][0]["memory_id"] == results[1]["memory_id"]
    item = memory.get(policy, [results[2]["memory_id"]])[0][0]
    assert (item.source, item.job_id) == ("policy", "job-1")


@BOTH_BACKENDS
@pytest.mark.parametrize(
    ("name", "arguments", "field", "reason"),
    [
        ("new_memory_insert", {"memory_type": "diary", "content": "x"}, "memory_type", "Input should be"),
        ("new_memory_insert", {"memory_type": "core_memory", "content": "x"}, "memory_type", "cannot be inserted"),
        ("new_memory_insert", {"memory_type": "semantic"}, "content", "Field required"),
        (
            "new_memory_insert",
            {"memory_type": "semantic", "content": "x", "colour": 1},
            "arguments",
            "unknown argument 'colour'; this tool takes: memory_type, content, timestamp",
        ),
        ("memory_update", {"memory_type": "core", "new_content": "x", "memory_id": "e-123456"}, "memory_id", "no ids"),
        ("search_memory", {"query": "x", "top_k": 1000}, "top_k", "less than or equal to 100"),
        ("search_memory", {"query": 5}, "query", "valid string"),
        ("memory_get", {"memory_ids": []}, "memory_ids", "at least 1"),
        ("no_such_tool", {}, "name", "unknown tool"),
    ],
)
def test_bad_arguments_name_the_field(memory: Memory, name: str, arguments: dict, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        execute(memory, CallContext(), name, arguments)
    assert error.value.field == field
    assert reason in str(error.value)


@BOTH_BACKENDS
def test_every_spelling_the_service_accepts_a_tool_call_accepts(memory: Memory) -> None:
    """One synonym map (`vocabulary`) for the tools, `Memory` and the training judge: the tools take
    every search method spelling `Memory` took, and report the canonical name."""
    ctx = CallContext()
    execute(memory, ctx, "new_memory_insert", {"memory_type": "semantic", "content": "Ana likes green tea"})
    for spelling in ("text-embedding", "text_embedding", "embedding", "Vector"):
        result = execute(memory, ctx, "search_memory", {"query": "tea", "search_method": spelling})
        assert result["search_method"] == "vector"
        assert memory.search(ctx, "tea", method=spelling).hits  # type: ignore[arg-type]
    for spelling in ("episodic_memory", " Semantic ", "CORE_MEMORY"):
        assert memory_type_name(spelling) == spelling.strip().lower().removesuffix("_memory")
    assert HeuristicTypeJudge().fits("Semantic_Memory", "Ana is a chef in Porto", {})


@BOTH_BACKENDS
def test_memory_type_spellings(memory: Memory) -> None:
    ctx = CallContext()
    for spelling in ("episodic", "episodic_memory", "Episodic", " EPISODIC_MEMORY "):
        result = execute(memory, ctx, "new_memory_insert", {"memory_type": spelling, "content": f"as {spelling}"})
        assert result["memory_type"] == "episodic"


def _published(name: str) -> str:
    """What tools/list says about a tool: its description and input schema, as one text."""
    tool = next(t for t in (*TOOLS, *CURATION_TOOLS) if t.name == name)
    return tool.description + json.dumps(tool.input_schema(), separators=(",", ":"))


LONG = "word " * 3000
# Each rule a refusal enforces, as (tool, arguments that break it, words of the published text
# that state it): the descriptions were shortened for the model's context, never past these.
RULES = [
    ("new_memory_insert", {"memory_type": "core", "content": "x"}, "core memory is set with memory_update"),
    ("new_memory_insert", {"memory_type": "semantic", "content": "x" * 8001}, "split long text"),
    ("new_memory_insert", {"memory_type": "episodic", "content": "x", "timestamp": "8 May"}, "with its year"),
    ("new_memory_insert", {"memory_type": "semantic", "content": "x", "colour": 1}, '"additionalProperties":false'),
    ("memory_update", {"memory_type": "core", "new_content": LONG}, "over its capacity"),
    ("memory_update", {"memory_type": "semantic", "new_content": "x"}, "Needed for episodic/semantic"),
    ("memory_update", {"memory_type": "core", "new_content": "x", "memory_id": "s-aaaaaa"}, "omit for core"),
    ("memory_update", {"memory_type": "core", "new_content": "x", "timestamp": "2024-01-01"}, "not for core"),
    ("memory_update", {"memory_type": "semantic", "new_content": "x", "memory_id": "s-zzzzzz"}, "existing id"),
    ("memory_update", {"memory_type": "episodic", "new_content": "x", "memory_id": "{sid}"}, "of that type"),
    (
        "memory_update",
        {"memory_type": "semantic", "new_content": "y", "memory_id": "{sid}", "expected_version": 7},
        "version you read",
    ),
    ("memory_delete", {"memory_type": "semantic", "memory_id": "s-zzzzzz"}, "existing id"),
    ("memory_restore", {"memory_type": "semantic", "memory_id": "{sid}"}, "refused for one not deleted"),
    ("search_memory", {"query": "x" * 2001}, "max 2000 characters"),
    ("search_memory", {"query": "x", "start_time": "2024-02-01", "end_time": "2024-01-01"}, "not before start_time"),
    ("search_memory", {"query": "x", "top_k": 101}, '"maximum":100'),
    ("search_memory", {"query": "x", "min_score": 2}, '"maximum":1'),
    ("memory_get", {"memory_ids": [f"s-{i:06d}" for i in range(101)]}, '"maxItems":100'),
    ("memory_list", {"memory_type": "semantic", "cursor": "nonsense"}, "next_cursor"),
    ("memorize", {"chunk": LONG}, "policy_max_chunk_tokens"),
    ("memorize", {"chunk": " "}, "empty chunk"),
    ("memorize_retry", {"job_id": "{job}"}, "a failed memorize job"),
    ("memorize_undo", {"job_id": "{job}"}, "a done or failed memorize job"),
]


@pytest.mark.parametrize(("name", "arguments", "words"), RULES, ids=[f"{r[0]}:{r[2]}" for r in RULES])
def test_every_refusal_is_stated_in_the_published_tool(memory: Memory, name: str, arguments: dict, words: str) -> None:
    ctx = CallContext()
    stored = execute(memory, ctx, "new_memory_insert", {"memory_type": "semantic", "content": "Ana likes tea"})
    job = CURATION_TOOLS[0].call(memory, ctx, {"chunk": "Ana: I moved to Lisbon."}).job_id  # stays queued
    filled = {k: v.format(sid=stored["memory_id"], job=job) if isinstance(v, str) else v for k, v in arguments.items()}
    tool = next(t for t in (*TOOLS, *CURATION_TOOLS) if t.name == name)
    with pytest.raises(MemalphaError):
        tool.call(memory, ctx, filled)
    assert words in _published(name)
