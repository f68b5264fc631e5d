"""The MCP Inspector CLI, an independent client, against the stdio server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import command, server_env

INSPECTOR = "@modelcontextprotocol/inspector@0.15.0"

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node.js (npx) for the MCP Inspector")


def inspector(data_dir: Path, *args: str) -> dict:
    process = subprocess.run(
        ["npx", "-y", INSPECTOR, "--cli", *command(), "serve", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=server_env(),
    )
    assert process.returncode == 0, process.stderr[-2000:]
    return json.loads(process.stdout)


def test_inspector_lists_and_calls_tools(tmp_path: Path) -> None:
    listed = inspector(tmp_path, "--method", "tools/list")
    names = {tool["name"] for tool in listed["tools"]}
    assert {"new_memory_insert", "memory_update", "memory_delete", "search_memory"} <= names

    inserted = inspector(
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "new_memory_insert",
        "--tool-arg",
        "memory_type=semantic",
        "--tool-arg",
        "content=The Inspector stored this fact.",
    )
    assert not inserted.get("isError")
    assert inserted["structuredContent"]["memory_id"].startswith("s-")

    found = inspector(
        tmp_path, "--method", "tools/call", "--tool-name", "search_memory", "--tool-arg", "query=Inspector fact"
    )
    assert found["structuredContent"]["results"][0]["text"] == "The Inspector stored this fact."
