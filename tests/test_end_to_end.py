"""Every tool, the resource and the prompt through a real MCP client, over stdio and over HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mcp import Client

from tests.conftest import BOTH_BACKENDS, call, call_error, command, connect, env, http_server, server_env, stdio_params

pytestmark = [pytest.mark.anyio, BOTH_BACKENDS]

TOOL_NAMES = {
    "new_memory_insert",
    "memory_update",
    "memory_delete",
    "search_memory",
    "memory_get",
    "memory_list",
    "memory_history",
    "memory_restore",
    "core_memory_read",
}


async def scenario(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    for tool in tools.values():
        assert tool.description and tool.input_schema["type"] == "object" and tool.output_schema
    assert tools["search_memory"].annotations.read_only_hint is True
    assert tools["memory_delete"].annotations.destructive_hint is True

    # insert: both spellings of memory_type, human and ISO timestamps
    trip = await call(
        client,
        "new_memory_insert",
        memory_type="episodic_memory",
        content="Maya booked a flight to Lisbon for her sister's wedding.",
        timestamp="6:10 pm on 3 March, 2025",
    )
    assert trip["memory_id"].startswith("e-") and trip["version"] == 1 and trip["source"] == "client"
    assert trip["event_time"] == "2025-03-03T18:10:00"
    dog = await call(client, "new_memory_insert", memory_type="semantic", content="Maya's beagle is named Biscuit.")
    job = await call(
        client,
        "new_memory_insert",
        memory_type="episodic",
        content="Maya started a new job as a data engineer.",
        timestamp="2025-03-10",
    )

    # update with and without expected_version; a stale version is refused with the current one
    updated = await call(
        client,
        "memory_update",
        memory_type="semantic",
        memory_id=dog["memory_id"],
        new_content="Maya's beagle Biscuit takes an allergy pill every morning.",
        expected_version=1,
    )
    assert updated["version"] == 2
    conflict = await call_error(
        client, "memory_update", memory_type="semantic", memory_id=dog["memory_id"], new_content="x", expected_version=1
    )
    assert "expected_version" in conflict and "version 2" in conflict and "allergy pill" in conflict

    # core: read empty, update, refuse insert, refuse over-capacity, read back, resource
    core = await call(client, "core_memory_read")
    assert core["content"] == "" and core["version"] == 0 and core["capacity_tokens"] == 512
    await call(client, "memory_update", memory_type="core", new_content="Maya is a vegetarian data engineer.")
    assert "core" in await call_error(client, "new_memory_insert", memory_type="core", content="nope")
    too_long = await call_error(client, "memory_update", memory_type="core_memory", new_content="word " * 600)
    assert "new_content" in too_long and "600 tokens" in too_long and "512" in too_long
    core = await call(client, "core_memory_read")
    assert core["content"] == "Maya is a vegetarian data engineer." and core["version"] == 1
    resource = await client.read_resource("memory://core")
    assert resource.contents[0].text == "Maya is a vegetarian data engineer."  # type: ignore[union-attr]

    # search, each method, with filters
    for method in ("hybrid", "bm25", "vector", "text-embedding"):
        found = await call(client, "search_memory", query="flight to Lisbon", search_method=method, top_k=2)
        assert found["results"][0]["memory_id"] == trip["memory_id"], method
        assert found["results"][0]["event_time"] == "2025-03-03T18:10:00"
    ranged = await call(
        client, "search_memory", query="Maya", memory_type="episodic", start_time="2025-03-05", end_time="2025-03-31"
    )
    assert [hit["memory_id"] for hit in ranged["results"]] == [job["memory_id"]]
    ordered = await call(client, "search_memory", query="Maya", memory_type="episodic", order="chronological")
    assert [hit["memory_id"] for hit in ordered["results"]] == [trip["memory_id"], job["memory_id"]]
    budget = await call(client, "search_memory", query="Maya", max_tokens=15)
    assert budget["total_tokens"] <= 15 and budget["truncated"] is True
    # results carry the text once; a long memory is excerpted for the query, whole on request
    assert set(found["results"][0]) == {
        *("memory_id", "memory_type", "event_time", "version", "score", "text", "excerpt"),
        *("match_score", "created_at", "updated_at"),
    }
    short = await call(client, "search_memory", query="Maya flight Lisbon", excerpt_tokens=4)  # 8 for a first hit
    cut = next(hit for hit in short["results"] if hit["memory_id"] == trip["memory_id"])
    assert cut["excerpt"] is True and cut["text"].endswith("…")
    whole = await call(client, "search_memory", query="Maya flight Lisbon", excerpt_tokens=0)
    assert not any(hit["excerpt"] for hit in whole["results"])

    # get and list
    got = await call(client, "memory_get", memory_ids=[trip["memory_id"], "e-zzzzzz"])
    assert [m["memory_id"] for m in got["memories"]] == [trip["memory_id"]] and got["missing"] == ["e-zzzzzz"]
    listed = await call(client, "memory_list", memory_type="episodic", limit=1)
    assert listed["total"] == 2 and listed["memories"][0]["memory_id"] == trip["memory_id"]
    second = await call(client, "memory_list", memory_type="episodic", limit=1, cursor=listed["next_cursor"])
    assert second["memories"][0]["memory_id"] == job["memory_id"] and second["next_cursor"] is None

    # prompt renders core and items
    prompt = await client.get_prompt("memory_context", {"topic": "Lisbon"})
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert "vegetarian data engineer" in text and "Lisbon" in text and trip["memory_id"] in text

    # delete; unknown ids are errors; deleted items never come back
    deleted = await call(client, "memory_delete", memory_type="episodic", memory_id=trip["memory_id"])
    assert deleted["deleted"] is True and deleted["version"] == 2
    history = await call(client, "memory_history", memory_id=trip["memory_id"])
    assert [(v["version"], v["operation"]) for v in history["versions"]] == [(1, "insert"), (2, "delete")]
    assert (
        history["versions"][0]["content"].startswith("Maya booked a flight")
        and history["versions"][1]["content"] is None
    )
    missing = await call_error(client, "memory_delete", memory_type="episodic", memory_id=trip["memory_id"])
    assert "memory_id" in missing and "deleted" in missing
    assert "memory_id" in await call_error(
        client, "memory_update", memory_type="semantic", memory_id="s-aaaaaa", new_content="x"
    )
    for method in ("hybrid", "bm25", "vector"):
        found = await call(client, "search_memory", query="flight to Lisbon", search_method=method)
        assert trip["memory_id"] not in [hit["memory_id"] for hit in found["results"]]
    cleared = await call(client, "memory_delete", memory_type="core")
    assert cleared["memory_id"] is None and (await call(client, "core_memory_read"))["content"] == ""

    # bad input names the field; the server keeps serving
    assert "memory_type" in await call_error(client, "new_memory_insert", memory_type="diary", content="x")
    assert "content" in await call_error(client, "new_memory_insert", memory_type="semantic", content="   ")
    assert "timestamp" in await call_error(
        client, "new_memory_insert", memory_type="episodic", content="x", timestamp="the day after never"
    )
    assert "search_method" in await call_error(client, "search_memory", query="x", search_method="magic")
    assert "top_k" in await call_error(client, "search_memory", query="x", top_k=0)
    assert "expected_version" in await call_error(
        client, "memory_delete", memory_type="semantic", memory_id=dog["memory_id"], expected_version=-1
    )
    assert "timestmap" in await call_error(
        client, "new_memory_insert", memory_type="episodic", content="x", timestmap="2024-01-01"
    )
    assert tools["new_memory_insert"].input_schema["additionalProperties"] is False
    as_json_string = await call(client, "memory_get", memory_ids=json.dumps([dog["memory_id"]]))
    assert [m["memory_id"] for m in as_json_string["memories"]] == [dog["memory_id"]]
    assert (await call(client, "memory_list", memory_type="semantic"))["total"] == 1


async def test_stdio(tmp_path: Path, database: dict[str, str]) -> None:
    async with connect(stdio_params(tmp_path / "data", **env(database))) as client:
        await scenario(client)


async def test_http(tmp_path: Path, database: dict[str, str]) -> None:
    with http_server(tmp_path / "data", **env(database)) as (url, _process):
        async with connect(url) as client:
            await scenario(client)


async def test_legacy_handshake_as_claude_desktop(tmp_path: Path, database: dict[str, str]) -> None:
    """Clients that speak the initialize handshake (Claude Desktop, the Inspector) get served too."""
    async with connect(stdio_params(tmp_path / "data", **env(database)), mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "mcp-memalpha"
        inserted = await call(client, "new_memory_insert", memory_type="semantic", content="Legacy clients work.")
        found = await call(client, "search_memory", query="legacy clients")
        assert found["results"][0]["memory_id"] == inserted["memory_id"]


def test_stdout_carries_only_protocol(tmp_path: Path, database: dict[str, str]) -> None:
    """Every line the stdio server prints is a JSON-RPC message, even while it loads models."""
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "new_memory_insert", "arguments": {"memory_type": "semantic", "content": "a fact"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "search_memory", "arguments": {"query": "fact"}},
        },
    ]
    process = subprocess.Popen(
        [*command(), "serve", "--data-dir", str(tmp_path / "data"), "--log-level", "DEBUG"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(**env(database)),
    )
    assert process.stdin and process.stdout and process.stderr
    messages = []
    try:
        for request in requests:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            if "id" in request:
                # Every line must parse as JSON-RPC: any stray print would fail here.
                messages.append(json.loads(process.stdout.readline()))
                assert messages[-1]["id"] == request["id"]
    finally:
        process.stdin.close()
        process.wait(timeout=30)
    search = messages[-1]
    assert search["result"]["structuredContent"]["results"][0]["text"] == "a fact"
    assert process.stdout.read().strip() == ""  # nothing more after the last reply, shutdown included
    assert "DEBUG" in process.stderr.read()  # logs went to stderr


async def snapshot(client: Client) -> dict:
    """Everything a client can read: core and every item of both types."""
    state = {"core": await call(client, "core_memory_read")}
    for kind in ("episodic", "semantic"):
        state[kind] = (await call(client, "memory_list", memory_type=kind, limit=100))["memories"]
    return state


async def test_export_import_round_trip_through_mcp(
    tmp_path: Path, database: dict[str, str], other_database: dict[str, str]
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    async with connect(stdio_params(source, **env(database))) as client:
        await call(client, "memory_update", memory_type="core", new_content="Ines is a marine biologist.")
        kept = await call(
            client, "new_memory_insert", memory_type="episodic", content="Ines dove at Sagres", timestamp="2024-08-01"
        )
        await call(
            client, "memory_update", memory_type="episodic", memory_id=kept["memory_id"], new_content="Ines dove twice"
        )
        gone = await call(client, "new_memory_insert", memory_type="semantic", content="Ines dislikes sardines")
        await call(client, "memory_delete", memory_type="semantic", memory_id=gone["memory_id"])
        await call(client, "new_memory_insert", memory_type="semantic", content="Ines speaks Portuguese and Danish")
        before = await snapshot(client)
    dump = tmp_path / "dump.jsonl"
    exported = subprocess.run(
        [*command(), "export", "--data-dir", str(source), "-o", str(dump)],
        env=server_env(**env(database)),
        capture_output=True,
    )
    assert exported.returncode == 0, exported.stderr
    imported = subprocess.run(
        [*command(), "import", str(dump), "--data-dir", str(target)],
        env=server_env(**env(other_database)),
        capture_output=True,
    )
    assert imported.returncode == 0, imported.stderr
    async with connect(stdio_params(target, **env(other_database))) as client:
        assert await snapshot(client) == before
        found = await call(client, "search_memory", query="dove Sagres")
        assert found["results"][0]["memory_id"] == kept["memory_id"] and found["results"][0]["version"] == 2
