"""Moving in from another memory server: the official memory server's file, written by the real
server in the test, and mem0/OpenMemory's export formats, imported all or nothing."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from mcp_memalpha import CallContext, Memory, Settings
from tests.conftest import command, server_env
from tests.npm import SERVER_MEMORY, node, package_dir

ENTITIES = [
    {"name": "Maya", "entityType": "person", "observations": ["Works as a marine biologist", "Allergic to shellfish"]},
    {"name": "Lisbon", "entityType": "city", "observations": ["Maya flies there on 18 April"]},
    {"name": "Tern Lab", "entityType": "organization", "observations": []},
]
RELATIONS = [{"from": "Maya", "to": "Tern Lab", "relationType": "works_at"}]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command(), *args], capture_output=True, text=True, env=server_env(), timeout=120)


async def write_with_the_official_server(memory_file: Path) -> None:
    script = package_dir(SERVER_MEMORY) / "dist" / "index.js"
    params = StdioServerParameters(command=node(), args=[str(script)], env={"MEMORY_FILE_PATH": str(memory_file)})
    async with Client(params, read_timeout_seconds=60) as client:
        for tool, arguments in (
            ("create_entities", {"entities": ENTITIES}),
            ("create_relations", {"relations": RELATIONS}),
            ("add_observations", {"observations": [{"entityName": "Maya", "contents": ["Runs every morning"]}]}),
        ):
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, result.content


@pytest.mark.anyio
async def test_memory_jsonl_written_by_the_official_server_imports_and_is_searchable(tmp_path: Path) -> None:
    memory_file = tmp_path / "memory.jsonl"
    await write_with_the_official_server(memory_file)
    assert json.loads(memory_file.read_text().splitlines()[0])["type"] == "entity"
    data = tmp_path / "data"
    result = cli("import", "--from", "server-memory", str(memory_file), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "6 added" in result.stderr  # 4 observations, 1 relation, 1 entity without observations
    with Memory(Settings(data_dir=data)) as memory:
        ctx = CallContext()
        for query, expected in (
            ("shellfish allergy", "Maya (person): Allergic to shellfish"),
            ("marine biologist", "Maya (person): Works as a marine biologist"),
            ("morning run", "Maya (person): Runs every morning"),
            ("when does Maya fly to Lisbon", "Lisbon (city): Maya flies there on 18 April"),
            ("where does Maya work", "Maya works at Tern Lab"),
        ):
            hits = memory.search(ctx, query, top_k=3).hits
            assert expected in [hit.item.content for hit in hits], (query, [h.item.content for h in hits])
        assert {item.memory_type for item in memory.iter_items(None)} == {"semantic"}
    again = cli("import", "--from", "server-memory", str(memory_file), "--data-dir", str(data))
    assert again.returncode == 0 and "0 added" in again.stderr  # the same facts keep their ids


def test_a_bad_line_in_a_server_memory_file_imports_nothing(tmp_path: Path) -> None:
    good = json.dumps({"type": "entity", "name": "Maya", "entityType": "person", "observations": ["Likes tea"]})
    bad_type = json.dumps({"type": "entity", "name": "Ben", "entityType": "person", "observations": "Likes coffee"})
    for second, reason in (
        ("{oops", "line 2: is not JSON"),
        (bad_type, "line 2: observations: is not a list of strings"),
        (json.dumps({"type": "relation", "from": "Maya", "relationType": "knows"}), "line 2: to: is missing"),
        (json.dumps({"type": "note"}), "line 2: type: 'note' is not 'entity' or 'relation'"),
    ):
        file = tmp_path / "memory.jsonl"
        file.write_text(good + "\n" + second + "\n")
        result = cli("import", "--from", "server-memory", str(file), "--data-dir", str(tmp_path / "d"))
        assert result.returncode == 1 and "nothing was imported" in result.stderr and reason in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "d").exists()


def openmemory_export(memories: list[dict[str, Any]]) -> dict[str, Any]:
    """The shape OpenMemory's `POST /api/v1/backup/export` writes as memories.json (in its zip)."""
    return {
        "user": {"id": "u-1", "user_id": "maya", "name": None, "email": None, "metadata": {}},
        "apps": [],
        "categories": [{"id": "c-1", "name": "health", "description": None}],
        "memories": memories,
        "memory_categories": [],
        "status_history": [],
        "access_controls": [],
        "export_meta": {"app_id_filter": None, "from_date": None, "to_date": None, "version": "1"},
    }


def mem0_memory(mid: str, content: str, state: str = "active") -> dict[str, Any]:
    return {
        "id": mid,
        "user_id": "u-1",
        "app_id": None,
        "content": content,
        "metadata": {},
        "state": state,
        "created_at": "2025-03-02T10:15:00+00:00",
        "updated_at": "2025-03-02T10:15:00+00:00",
        "archived_at": None,
        "deleted_at": "2025-03-03T08:00:00+00:00" if state == "deleted" else None,
        "category_ids": ["c-1"],
    }


def test_openmemory_export_zip_imports_its_live_memories(tmp_path: Path) -> None:
    export = openmemory_export(
        [
            mem0_memory("0b4e7c1e-5a9f-4f7e-9a51-0c3f3b8d2a11", "Is allergic to shellfish"),
            mem0_memory("5d1c2a3b-7e8f-4a6b-8c9d-1e2f3a4b5c6d", "Prefers morning meetings"),
            mem0_memory("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "Lives in Porto", state="deleted"),
        ]
    )
    archive = tmp_path / "memories_export_maya.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("memories.json", json.dumps(export, indent=2))
        zf.writestr("memories.jsonl.gz", b"")
    data = tmp_path / "data"
    result = cli("import", "--from", "mem0", str(archive), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "2 added" in result.stderr
    with Memory(Settings(data_dir=data)) as memory:
        items = {item.content: item for item in memory.iter_items(None)}
        assert set(items) == {"Is allergic to shellfish", "Prefers morning meetings"}
        assert items["Is allergic to shellfish"].created_at == "2025-03-02T10:15:00Z"
        hits = memory.search(CallContext(), "shellfish", top_k=1).hits
        assert hits[0].item.content == "Is allergic to shellfish"


def test_mem0_get_all_dump_imports(tmp_path: Path) -> None:
    dump = {
        "results": [
            {
                "id": "892db2ae-06d9-49e5-8b3e-585ef9b85b8e",
                "memory": "User is planning a trip to Japan",
                "hash": "b8a6e6b4f8f1c7d3a2e1f0c9b8a7d6e5",
                "metadata": None,
                "created_at": "2024-07-20T01:27:35.251209-07:00",
                "updated_at": None,
                "user_id": "alex",
            }
        ]
    }
    file = tmp_path / "mem0.json"
    file.write_text(json.dumps(dump))
    data = tmp_path / "data"
    assert cli("import", "--from", "mem0", str(file), "--data-dir", str(data)).returncode == 0
    with Memory(Settings(data_dir=data)) as memory:
        (item,) = memory.iter_items(None)
        assert item.content == "User is planning a trip to Japan" and item.created_at == "2024-07-20T08:27:35.251209Z"


def test_a_mem0_file_of_another_shape_imports_nothing(tmp_path: Path) -> None:
    for content, reason in (
        ('{"count": 3}', "has no 'memories' or 'results' list"),
        ('[{"id": "1", "memory": ""}]', "memory 1: memory: is missing or not a non-empty string"),
        ('[{"id": "1", "memory": "x", "created_at": "yesterday-ish"}]', "memory 1: created_at"),
        ("not json", "is not JSON"),
    ):
        file = tmp_path / "mem0.json"
        file.write_text(content)
        result = cli("import", "--from", "mem0", str(file), "--data-dir", str(tmp_path / "d"))
        assert result.returncode == 1 and reason in result.stderr, result.stderr
        assert not (tmp_path / "d").exists()
