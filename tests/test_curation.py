"""The server side of the curator: its tools and execute, the worker, and the memorize tools over MCP.

The curator here is a scripted fake that makes real tool calls through `execute`; tests of the
real model (llama.cpp) spawn a server with `conftest.policy_params` (tests/test_curation_e2e.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_memalpha.policy.calls import CallOutcome, CallRecord, CurationResult, Execute

from mcp_memalpha import CallContext, InvalidArgument, Memory, Settings
from mcp_memalpha.curation import CURATOR_TOOL_NAMES, CurationWorker, curator_tools, make_execute
from mcp_memalpha.jobs import JobQueue
from mcp_memalpha.server import build_server
from mcp_memalpha.tools import CURATION_TOOLS, TOOLS_BY_NAME
from tests.conftest import call, call_error, connect, policy_params

Script = list[tuple[str, dict[str, Any]]]


class ScriptedCurator:
    """Makes the calls of `script` through `execute`, reporting each, like the real curator does.

    `before_call(i)` runs before call i (tests use it to look at the job mid-run or to hold it);
    `fail` is raised after the calls.
    """

    def __init__(
        self,
        script: Script,
        before_call: Callable[[int], None] | None = None,
        fail: Exception | None = None,
    ) -> None:
        self.script = script
        self.before_call = before_call
        self.fail = fail
        self.chunks: list[tuple[str, str | None]] = []
        self.records: list[CallRecord] = []  # of every run

    def curate(
        self,
        chunk: str,
        *,
        timestamp: str | None,
        execute: Execute,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> CurationResult:
        self.chunks.append((chunk, timestamp))
        result = CurationResult(steps=1)
        for i, (name, arguments) in enumerate(self.script):
            if self.before_call is not None:
                self.before_call(i)
            outcome = execute(name, arguments)
            record = CallRecord(1, name, arguments, outcome.ok, outcome.output, outcome.error)
            result.calls.append(record)
            self.records.append(record)
            if on_call is not None:
                on_call(record)
        if self.fail is not None:
            raise self.fail
        return result


SCRIPT: Script = [
    ("memory_update", {"memory_type": "core_memory", "new_content": "The user is Ana, a chef in Porto."}),
    (
        "new_memory_insert",
        {"memory_type": "episodic_memory", "content": "Ana opened a restaurant.", "timestamp": "2024-01-03"},
    ),
    ("new_memory_insert", {"memory_type": "semantic", "content": "Ana's restaurant serves seafood."}),
    ("memory_delete", {"memory_type": "semantic", "memory_id": "s-000000"}),  # refused: no such memory
    ("search_memory", {"query": "restaurant", "memory_type": "semantic"}),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", policy="default", policy_max_attempts=2, policy_lease_seconds=30)


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    with Memory(settings) as opened:
        yield opened


def wait_until(condition: Callable[[], bool], bound: float = 60.0) -> None:
    """Poll until `condition` holds; the bound only keeps a broken build from hanging the suite."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def worker_for(memory: Memory, curator: ScriptedCurator, **kwargs: Any) -> CurationWorker:
    """A worker with its curator loaded, driven by run_once (no thread)."""
    worker = CurationWorker(memory, lambda: curator, **kwargs)
    assert worker._load_curator()
    return worker


# ---- tools and execute -----------------------------------------------------------------------


def test_the_curator_is_handed_the_memalpha_tools_from_their_specs() -> None:
    defs = curator_tools()
    assert (
        [d.name for d in defs]
        == list(CURATOR_TOOL_NAMES)
        == [
            "new_memory_insert",
            "memory_update",
            "memory_delete",
            "search_memory",
        ]
    )
    for tool in defs:
        spec = TOOLS_BY_NAME[tool.name]
        assert (tool.description, tool.parameters) == (spec.description, spec.input_schema())


def test_execute_turns_refusals_into_outcomes_and_tags_writes(memory: Memory) -> None:
    ctx = CallContext(source="policy", job_id="j-0000000001")
    writes: list[int] = []
    execute = make_execute(memory, ctx, on_write=lambda: writes.append(1))
    inserted = execute("new_memory_insert", {"memory_type": "semantic_memory", "content": "Ana has a cat."})
    assert inserted.ok and inserted.error is None and inserted.output["memory_id"].startswith("s-")
    item = memory.get(ctx, [inserted.output["memory_id"]])[0][0]
    assert (item.source, item.job_id) == ("policy", "j-0000000001")

    refused: list[tuple[str, Any, str]] = [
        ("new_memory_insert", {"memory_type": "core", "content": "x"}, "memory_type"),
        (
            "memory_update",
            {"memory_type": "semantic", "memory_id": "s-zzzzzz", "new_content": "x"},
            "no semantic memory",
        ),
        ("new_memory_insert", "not an object", "arguments: must be a JSON object"),
        (
            "memory_restore",
            {"memory_type": "semantic", "memory_id": "s-zzzzzz"},
            "'memory_restore' is not one of your tools",
        ),
        ("memorize", {"chunk": "recursion"}, "'memorize' is not one of your tools"),
    ]
    for name, arguments, reason in refused:
        outcome = execute(name, arguments)
        assert isinstance(outcome, CallOutcome) and not outcome.ok and reason in (outcome.error or ""), outcome
    assert execute("search_memory", {"query": "cat"}).ok
    # the reads the memalpha view and its duplicate check make
    assert execute("memory_list", {"memory_type": "semantic", "limit": 5, "newest_first": True}).ok
    assert execute("memory_get", {"memory_ids": ["s-zzzzzz"]}).output["missing"] == ["s-zzzzzz"]
    assert len(writes) == 1  # only the insert wrote


@pytest.mark.parametrize(
    ("name", "arguments", "field", "reason"),
    [
        ("memorize", {}, "chunk", "Field required"),
        ("memorize", {"chunk": 5}, "chunk", "valid string"),
        ("memorize", {"chunk": "hi", "timestamp": "someday"}, "timestamp", "someday"),
        (
            "memorize",
            {"chunk": "hi", "when": "now"},
            "arguments",
            "unknown argument 'when'; this tool takes: chunk, timestamp",
        ),
        ("memorize_status", {}, "job_id", "Field required"),
        (
            "memorize_status",
            {"job_id": "j-0000000000", "wait_seconds": 301},
            "wait_seconds",
            "less than or equal to 300",
        ),
        (
            "memorize_status",
            {"job_id": "j-0000000000"},
            "job_id",
            "no memorize job 'j-0000000000' in namespace 'default'",
        ),
        ("memorize_undo", {"job_id": "s-7kq2mx"}, "job_id", "is not a job id"),
    ],
)
def test_memorize_tools_name_the_bad_argument(
    memory: Memory, name: str, arguments: dict[str, Any], field: str, reason: str
) -> None:
    spec = {tool.name: tool for tool in CURATION_TOOLS}[name]
    with pytest.raises(InvalidArgument) as error:
        spec.call(memory, CallContext(), arguments)
    assert error.value.field == field and reason in str(error.value)


# ---- the worker ------------------------------------------------------------------------------


def test_the_worker_runs_a_job_and_records_each_call_as_it_happens(memory: Memory, settings: Settings) -> None:
    ctx = CallContext()
    queue = JobQueue(memory.ledger, settings)
    job, _ = queue.enqueue(ctx, "[Dialogue at 2024-01-03] User: I opened my restaurant.", "2024-01-03")
    seen: list[int] = []

    def look(i: int) -> None:  # mid-run, status already shows the calls made so far
        current, _ = queue.status(ctx, job.id)
        assert current.state == "running"
        seen.append(len(current.calls))

    curator = ScriptedCurator(SCRIPT, before_call=look)
    writes: list[int] = []
    worker = worker_for(memory, curator, on_write=lambda: writes.append(1))
    assert worker.run_once() and not worker.run_once()

    assert curator.chunks == [("[Dialogue at 2024-01-03] User: I opened my restaurant.", "2024-01-03")]
    assert seen == [0, 1, 2, 3, 4]
    done, position = queue.status(ctx, job.id)
    assert done.state == "done" and done.attempts == 1 and position is None and done.error is None
    assert [c["name"] for c in done.calls] == [name for name, _ in SCRIPT]
    assert [c["ok"] for c in done.calls] == [True, True, True, False, True]
    assert "no semantic memory with id 's-000000'" in done.calls[3]["error"]
    assert done.result and done.result["steps"] == 1
    assert len(writes) == 3
    items = list(memory.iter_items(ctx.namespace))
    assert {(i.source, i.job_id) for i in items} == {("policy", job.id)}
    assert memory.core(ctx).content == "The user is Ana, a chef in Porto." and memory.core(ctx).job_id == job.id


def test_a_curator_that_raises_is_retried_then_its_job_fails(memory: Memory, settings: Settings) -> None:
    ctx = CallContext()
    queue = JobQueue(memory.ledger, settings)
    job, _ = queue.enqueue(ctx, "chunk")
    worker = worker_for(memory, ScriptedCurator(SCRIPT[:3], fail=RuntimeError("llama.cpp ran out of memory")))
    assert worker.run_once()
    assert queue.status(ctx, job.id)[0].state == "queued"
    assert worker.run_once()
    failed, _ = queue.status(ctx, job.id)
    assert failed.state == "failed" and "RuntimeError: llama.cpp ran out of memory" in (failed.error or "")
    assert list(memory.iter_items(ctx.namespace)) == [] and memory.core(ctx).content == ""


def test_a_context_with_no_room_for_a_chunk_fails_at_once_without_retries(memory: Memory, settings: Settings) -> None:
    """A chunk over the limit is split; a context too small for any of it is final (a configuration)."""
    from mcp_memalpha.policy.curator import ChunkTooLong

    ctx = CallContext()
    queue = JobQueue(memory.ledger, settings)
    job, _ = queue.enqueue(ctx, "chunk")
    worker = worker_for(memory, ScriptedCurator(SCRIPT[:1], fail=ChunkTooLong(10, 2048, 2048)))
    assert worker.run_once()
    failed, _ = queue.status(ctx, job.id)
    assert failed.state == "failed" and failed.attempts == 1
    assert "the curator's 2048-token context leaves 10 tokens for a chunk" in (failed.error or "")
    assert list(memory.iter_items(ctx.namespace)) == []


def test_the_heartbeat_keeps_the_lease_while_the_curator_works(tmp_path: Path) -> None:
    """Lease time is a fake clock: it jumps past the lease while the curator works; the heartbeat
    (every third of the lease, in real time) renews it, so no other worker can take the job."""
    settings = Settings(data_dir=tmp_path / "data", policy="default", policy_lease_seconds=0.3)
    now = [1_000_000.0]
    with Memory(settings) as memory:
        queue = JobQueue(memory.ledger, settings, lambda: now[0])
        job, _ = queue.enqueue(CallContext(), "chunk")
        taken: list[bool] = []

        def hold(i: int) -> None:
            if i:
                return
            claimed = queue.status(CallContext(), job.id)[0]
            now[0] += 10  # far past the lease
            assert claimed.lease_until is not None and claimed.lease_until < now[0]
            wait_until(lambda: (queue.status(CallContext(), job.id)[0].lease_until or 0) > now[0])  # renewed
            taken.append(queue.claim("another-worker") is not None)

        worker = worker_for(memory, ScriptedCurator(SCRIPT[:2], before_call=hold), clock=lambda: now[0])
        assert worker.run_once()
        assert taken == [False]
        assert queue.status(CallContext(), job.id)[0].state == "done"


def test_stopping_mid_job_hands_it_back_and_the_rest_of_that_run_is_refused(memory: Memory, settings: Settings) -> None:
    ctx = CallContext()
    queue = JobQueue(memory.ledger, settings)
    job, _ = queue.enqueue(ctx, "chunk")
    holding, release = threading.Event(), threading.Event()

    def hold(i: int) -> None:
        if i == 2:  # after two writes, stall until the server has stopped
            holding.set()
            release.wait()

    curator = ScriptedCurator(SCRIPT[:3], before_call=hold)
    worker = CurationWorker(memory, lambda: curator, poll_seconds=0.01)
    worker.start()
    worker.notify()
    assert holding.wait(60)
    worker.stop(timeout=0.1)  # the curator is stalled: the job is handed back
    released, _ = queue.status(ctx, job.id)
    assert released.state == "queued" and released.attempts == 0 and released.lease_owner is None
    release.set()
    worker._thread.join(60)
    assert not worker._thread.is_alive()
    assert queue.status(ctx, job.id)[0].state == "queued"  # the stalled run could not mark it done
    assert "no longer holds its lease" in (curator.records[-1].error or "")  # nor write after the hand-back

    rerun = worker_for(memory, ScriptedCurator(SCRIPT[:3]))
    assert rerun.run_once()
    done, _ = queue.status(ctx, job.id)
    assert done.state == "done" and all(c["ok"] for c in done.calls)
    contents = sorted(i.content for i in memory.iter_items(ctx.namespace))
    assert contents == ["Ana opened a restaurant.", "Ana's restaurant serves seafood."]  # once each


def test_a_curator_that_cannot_load_is_reported(memory: Memory) -> None:
    def broken() -> Any:
        raise FileNotFoundError("no model at /models/missing.gguf")

    worker = CurationWorker(memory, broken)
    worker.start()
    assert worker.loaded.wait(60)
    worker.stop()
    assert worker.load_error == "FileNotFoundError: no model at /models/missing.gguf"


# ---- through MCP -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_memorize_tools_over_mcp(settings: Settings) -> None:
    curator = ScriptedCurator(SCRIPT)
    server = build_server(settings, load_curator=lambda: curator)
    async with Client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"memorize", "memorize_status", "memorize_undo"} <= set(tools)
        assert tools["memorize_undo"].annotations.destructive_hint is True
        assert all(tools[name].output_schema for name in ("memorize", "memorize_status", "memorize_undo"))

        queued = await call(client, "memorize", chunk="User: I opened my restaurant.", timestamp="2024-01-03")
        assert queued["job_id"].startswith("j-") and queued["state"] == "queued" and queued["position"] == 0

        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))

        result = await client.call_tool(
            "memorize_status", {"job_id": queued["job_id"], "wait_seconds": 120}, progress_callback=on_progress
        )
        status = result.structured_content
        assert not result.is_error and status is not None
        assert status["state"] == "done" and status["executed"] == 4 and len(status["calls"]) == 5
        assert status["calls"][1]["output"]["memory_type"] == "episodic"
        assert progress and progress[-1][1] == f"job {queued['job_id']} done, 5 tool calls made"
        assert [value for value, _ in progress] == sorted({value for value, _ in progress})  # strictly growing

        found = await call(client, "search_memory", query="seafood restaurant")
        assert found["results"] and found["results"][0]["text"] == "Ana's restaurant serves seafood."
        undone = await call(client, "memorize_undo", job_id=queued["job_id"])
        assert undone["state"] == "undone"
        assert sorted(r["action"] for r in undone["reverted"]) == ["deleted", "deleted", "reverted"]
        assert (await call(client, "core_memory_read"))["content"] == ""
        assert (await call(client, "search_memory", query="seafood restaurant"))["results"] == []

        again = await call_error(client, "memorize_undo", job_id=queued["job_id"])
        assert f"job_id: job '{queued['job_id']}' is already undone" in again
        assert "chunk: is empty" in await call_error(client, "memorize", chunk="  ")
        assert "wait_seconds" in await call_error(client, "memorize_status", job_id=queued["job_id"], wait_seconds=-1)
        assert "is not a job id" in await call_error(client, "memorize_status", job_id="e-7kq2mx")
        assert "unknown argument 'text'" in await call_error(client, "memorize", text="hello")


@pytest.mark.anyio
async def test_memorize_is_refused_when_the_curator_cannot_load(settings: Settings) -> None:
    attempted = threading.Event()

    def broken() -> Any:
        attempted.set()
        raise RuntimeError("llama_cpp is not installed")

    server = build_server(settings, load_curator=broken)
    async with Client(server) as client:
        assert (await call(client, "memory_list", memory_type="semantic"))["total"] == 0  # memory tools still work
        await anyio.to_thread.run_sync(attempted.wait)
        for _ in range(100):  # the load error is recorded just after the loader raised
            result = await client.call_tool("memorize", {"chunk": "hello"})
            if result.is_error:
                break
            await anyio.sleep(0.05)
        error = result.content[0].text  # type: ignore[union-attr]
        assert "policy: the curator model 'default' could not be loaded" in error
        assert "llama_cpp is not installed" in error


@pytest.mark.anyio
async def test_without_a_policy_there_are_no_memorize_tools(tmp_path: Path) -> None:
    server = build_server(Settings(data_dir=tmp_path / "data"))
    async with Client(server) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "memorize" not in names and "memory_update" in names


@pytest.mark.anyio
async def test_a_spawned_server_with_the_default_policy_serves_memorize(tmp_path: Path) -> None:
    async with connect(policy_params(tmp_path / "data")) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"memorize", "memorize_status", "memorize_undo"} <= names
