"""`mcp-memalpha demo`: the main job on embedded defaults, through the real MCP tools.

Stores a short dated conversation (each turn an episodic memory, as a client agent would), the
facts and core paragraph the agent noted, shows the memory and answers questions by search.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import click

from mcp_memalpha.settings import Settings

CONVERSATION = Path(__file__).parent / "data" / "demo_conversation.json"


def run_demo(data_dir: Path | None) -> None:
    if data_dir is not None:
        anyio.run(_demo, data_dir)
        return
    with tempfile.TemporaryDirectory(prefix="memalpha-demo-") as tmp:
        anyio.run(_demo, Path(tmp))


async def _demo(data_dir: Path) -> None:
    from mcp import Client

    from mcp_memalpha.server import build_server

    conversation = json.loads(CONVERSATION.read_text())
    server = build_server(Settings(data_dir=data_dir, namespace="demo", log_level="WARNING"))
    async with Client(server) as client:

        async def call(tool: str, **arguments: Any) -> dict[str, Any]:
            result = await client.call_tool(tool, arguments)
            if result.is_error:
                raise click.ClickException(f"{tool} failed: {result.content[0].text}")  # type: ignore[union-attr]
            return result.structured_content or {}

        click.secho(f"Storing a conversation in {data_dir} (namespace 'demo') through the MCP tools", bold=True)
        started = time.perf_counter()
        turns = 0
        for session in conversation["sessions"]:
            for turn in session["turns"]:
                text = f"{turn['speaker']}: {turn['text']}"
                await call("new_memory_insert", memory_type="episodic", content=text, timestamp=session["date"])
                turns += 1
        for fact in conversation["facts"]:
            await call("new_memory_insert", memory_type="semantic", content=fact)
        await call("memory_update", memory_type="core", new_content=conversation["core"])
        click.echo(
            f"  {turns} turns, {len(conversation['facts'])} facts, 1 core paragraph "
            f"in {time.perf_counter() - started:.2f} s\n"
        )

        core = await call("core_memory_read")
        click.secho("Core memory", bold=True)
        click.echo(
            f"  {core['content']}\n  ({core['tokens']}/{core['capacity_tokens']} tokens, version {core['version']})\n"
        )
        for kind in ("semantic", "episodic"):
            page = await call("memory_list", memory_type=kind, limit=100)
            click.secho(f"{kind.capitalize()} memory ({page['total']})", bold=True)
            for item in page["memories"]:
                when = f"{item['event_time']}  " if item["event_time"] else ""
                click.echo(f"  {item['memory_id']}  {when}{item['content']}")
            click.echo()

        for question in conversation["questions"]:
            started = time.perf_counter()
            found = await call("search_memory", query=question, top_k=3)
            elapsed = (time.perf_counter() - started) * 1000
            click.secho(f"Q: {question}", bold=True)
            click.echo(f"   (hybrid search, {elapsed:.0f} ms)")
            for hit in found["results"]:
                when = f"[{hit['event_time']}] " if hit["event_time"] else ""
                click.echo(f"   {hit['score']:.4f}  {when}{hit['content']}")
            click.echo()
