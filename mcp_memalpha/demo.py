"""`mcp-memalpha demo`: the main job on embedded defaults, through the real MCP tools.

Part 1 stores a short dated conversation (each turn an episodic memory, as a client agent would),
the facts and core paragraph the agent noted, shows the memory and answers questions by search.
Part 2 (with the `policy` extra) forwards the same conversation to `memorize`, lets the embedded
curator model build a memory of its own, shows its calls and that memory, and asks again.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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


Call = Callable[..., Awaitable[dict[str, Any]]]


async def _demo(data_dir: Path) -> None:
    conversation = json.loads(CONVERSATION.read_text())
    async with _client(Settings(data_dir=data_dir, namespace="demo", log_level="WARNING")) as call:
        await _client_written(call, conversation, data_dir)
    if importlib.util.find_spec("llama_cpp") is None:
        click.secho("The curator: pip install 'mcp-memalpha[policy]' and run the demo again to see it.", bold=True)
        return
    curated = Settings(data_dir=data_dir, namespace="demo-curated", log_level="WARNING", policy="default")
    async with _client(curated) as call:
        await _curated(call, conversation)


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[Call]:
    from mcp import Client

    from mcp_memalpha.server import build_server

    async with Client(build_server(settings)) as client:

        async def call(tool: str, **arguments: Any) -> dict[str, Any]:
            result = await client.call_tool(tool, arguments)
            if result.is_error:
                raise click.ClickException(f"{tool} failed: {result.content[0].text}")  # type: ignore[union-attr]
            return result.structured_content or {}

        yield call


async def _client_written(call: Call, conversation: dict[str, Any], data_dir: Path) -> None:
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

    await _show_memory(call)
    await _ask(call, conversation["questions"])


async def _curated(call: Call, conversation: dict[str, Any]) -> None:
    click.secho("The curator: the same conversation forwarded with memorize (namespace 'demo-curated')", bold=True)
    click.echo("  the embedded SmolLM2-135M model decides what to keep, through the same tools\n")
    for session in conversation["sessions"]:
        chunk = "\n".join(f"{turn['speaker']}: {turn['text']}" for turn in session["turns"])
        job = await call("memorize", chunk=chunk, timestamp=session["date"])
        status = await call("memorize_status", job_id=job["job_id"], wait_seconds=300)
        click.echo(
            f"  job {job['job_id']} ({session['date']}): {status['state']}, {status['executed']}/"
            f"{len(status['calls'])} calls executed in {status['seconds'] or 0:.1f} s"
        )
        for made in status["calls"]:
            arguments = made["arguments"]
            what = arguments.get("content") or arguments.get("new_content") or arguments.get("query") or ""
            mark = "ok " if made["ok"] else "ERR"
            click.echo(f"    {mark} {made['name']}({arguments.get('memory_type', '')}) {what[:90]}")
    click.echo()
    await _show_memory(call)
    await _ask(call, conversation["questions"])


async def _show_memory(call: Call) -> None:
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


async def _ask(call: Call, questions: list[str]) -> None:
    for question in questions:
        started = time.perf_counter()
        found = await call("search_memory", query=question, top_k=3)
        elapsed = (time.perf_counter() - started) * 1000
        click.secho(f"Q: {question}", bold=True)
        click.echo(f"   (hybrid search, {elapsed:.0f} ms)")
        for hit in found["results"]:
            click.echo(f"   {hit['score']:.4f}  {hit['text']}")
        click.echo()
