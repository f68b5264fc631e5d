"""The tool definitions themselves: the Mem-α contract, argument checking, `execute`."""

from __future__ import annotations

import pytest

from mcp_memalpha import CallContext, InvalidArgument, Memory
from mcp_memalpha.tools import CURATION_TOOLS, MEMALPHA_TOOLS, TOOLS, TOOLS_BY_NAME, execute
from mcp_memalpha.vocabulary import memory_type_name
from tests.conftest import BOTH_BACKENDS
from training.rewards import HeuristicTypeJudge


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
