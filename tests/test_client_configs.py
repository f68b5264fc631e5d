"""Every client configuration in the README, launched exactly as written (command, args, env;
only the install and data paths pointed at this test's), then driven by a real MCP client."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import command, free_port, wait_for_port

README = Path(__file__).parent.parent / "README.md"
INSTALLED = "/home/you/mcp-memalpha/.venv/bin/mcp-memalpha"
DATA_DIR = "/home/you/.local/share/mcp-memalpha"
BLOCK = re.compile(r"<!-- client-config: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def blocks() -> dict[str, tuple[str, str]]:
    return {m["name"]: (m["lang"], m["body"]) for m in BLOCK.finditer(README.read_text())}


def here(text: str, data_dir: Path) -> str:
    """The README's placeholder paths, pointed at this installation and the test's folder."""
    (script,) = command()  # the installed console script, as the README tells users to use
    return text.replace(INSTALLED, script).replace(DATA_DIR, str(data_dir))


def from_json(body: str, key: str) -> StdioServerParameters:
    entry = json.loads(body)[key]["memory"]
    assert entry.get("type", "stdio") == "stdio"
    return StdioServerParameters(command=entry["command"], args=entry["args"], env=entry.get("env"))


def from_claude_mcp_add(line: str) -> StdioServerParameters:
    """`claude mcp add NAME [options] -- COMMAND ARGS...`, read the way Claude Code reads it."""
    words = shlex.split(line)
    assert words[:3] == ["claude", "mcp", "add"] and "--" in words
    options, launch = words[4 : words.index("--")], words[words.index("--") + 1 :]
    env = dict(options[i + 1].split("=", 1) for i, word in enumerate(options) if word in ("-e", "--env"))
    return StdioServerParameters(command=launch[0], args=launch[1:], env=env)


async def remembers(client: Client, data_dir: Path) -> None:
    inserted = await client.call_tool("new_memory_insert", {"memory_type": "semantic", "content": "Maya likes terns"})
    assert not inserted.is_error, inserted.content
    found = await client.call_tool("search_memory", {"query": "terns", "top_k": 1})
    assert found.structured_content is not None and inserted.structured_content is not None
    assert found.structured_content["results"][0]["memory_id"] == inserted.structured_content["memory_id"]
    assert (data_dir / "memory.db").exists()  # the env of the configuration was honoured


def test_the_readme_documents_each_client() -> None:
    assert set(blocks()) == {"claude-desktop", "claude-code", "cursor", "vscode", "http"}


@pytest.mark.anyio
@pytest.mark.parametrize("client_name", ["claude-desktop", "claude-code", "cursor", "vscode"])
async def test_stdio_configuration_as_written_serves_a_client(client_name: str, tmp_path: Path) -> None:
    _, body = blocks()[client_name]
    body = here(body, tmp_path / "data")
    if client_name == "claude-code":
        params = from_claude_mcp_add(body.strip())
    else:
        params = from_json(body, "servers" if client_name == "vscode" else "mcpServers")
    async with Client(params, read_timeout_seconds=60) as client:
        await remembers(client, tmp_path / "data")


@pytest.mark.anyio
async def test_http_configuration_as_written_serves_a_client(tmp_path: Path) -> None:
    _, body = blocks()["http"]
    port = str(free_port())  # the documented port, moved to a free one so parallel runs do not meet
    start, comment = here(body, tmp_path / "data").replace("8765", port).strip().splitlines()
    url = comment.split("connect to ")[1].strip()
    words = shlex.split(start)
    env_words = [w for w in words if re.fullmatch(r"[A-Z_]+=.*", w)]
    argv = words[len(env_words) :]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMALPHA_")}
    env.update(dict(w.split("=", 1) for w in env_words))
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(int(port), process)
        async with Client(url, read_timeout_seconds=60) as client:
            await remembers(client, tmp_path / "data")
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


def test_placeholders_are_the_only_paths() -> None:
    """Each block names the install and data paths only through the two placeholders."""
    for name, (_, body) in blocks().items():
        assert INSTALLED in body, name
        leftover = body.replace(INSTALLED, "").replace(DATA_DIR, "")
        assert "/home/you" not in leftover, name
