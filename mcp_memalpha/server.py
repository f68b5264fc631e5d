"""MCP wiring: the tools of `tools.py`, the core-memory resource, a context prompt, transports.

`build_server(settings)` makes a server and opens nothing. Its tool list is the published
catalog (`catalog.py`), so neither the tools' models nor the store are imported to list them. The
memory opens in the lifespan or, for a stdio window, at its first call; LanceDB and the embedding
model load in a background thread once the first call comes. So a stdio client gets its
`initialize` and `tools/list` replies about as fast as the SDK allows, and a window that never
calls a tool stays small (about 75 MB, against about 290 MB with them loaded). With a curator
policy on, the memorize tools are served too and a `CurationWorker` loads the model and runs
their jobs on its own thread.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import anyio.to_thread
from anyio import CapacityLimiter
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, ToolAnnotations
from pydantic import ConfigDict, ValidationError

from mcp_memalpha import __version__
from mcp_memalpha.caller import request_caller, request_namespace
from mcp_memalpha.catalog import Entry, entries
from mcp_memalpha.clock import human_date, local_now, system_clock, zone_name
from mcp_memalpha.context import CallContext
from mcp_memalpha.errors import MemalphaError
from mcp_memalpha.settings import Settings

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from mcp_memalpha.curation import CurationWorker, Curator
    from mcp_memalpha.memory import Memory
    from mcp_memalpha.tools import Progress, ToolSpec

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
Long-term memory for this user, in three parts:
- core: one short paragraph always worth knowing (read core_memory_read or the memory://core resource);
- episodic: dated events (who did what, when);
- semantic: facts and preferences.
Search before you insert, and update or delete a memory rather than adding a contradicting one.
Pass expected_version when you update what you read, so concurrent writers never overwrite each other."""


def instructions(settings: Settings) -> str:
    """INSTRUCTIONS with today's date in the user's zone, so a client knows what "yesterday" is."""
    now = local_now(system_clock, settings.zone)
    return (
        f"{INSTRUCTIONS}\nToday is {now:%A} {human_date(now)} ({zone_name(settings.zone)}). Times may be "
        "given in words ('yesterday', 'last week', 'in May'): the server reads them in this zone and says which "
        "range it used."
    )


# Batch the index work of a burst of writes into one LanceDB commit.
INDEX_DEBOUNCE_S = 0.05
# Worker threads for tool calls, and separately for calls that wait (so waits never hold up the rest).
CALL_THREADS = 40
WAIT_THREADS = 64


class BackgroundIndexer:
    """Keeps the search index caught up off the request path, so searches rarely wait.

    Woken by this process's writes, by other processes' writes where the ledger tells of them
    (`Ledger.watch`: LISTEN/NOTIFY on PostgreSQL) and, with `index_poll_seconds`, by polling the
    ledger head (the fallback, and the only way on SQLite)."""

    def __init__(self, memory: Memory, *, follow_when_idle: bool = False) -> None:
        self.memory = memory
        self.follow_when_idle = follow_when_idle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memalpha-indexer", daemon=True)
        self._unwatch: Callable[[], None] | None = None
        self._warm = False  # set after the first round (the warm-up); later rounds only sync

    def start(self) -> None:
        self._thread.start()  # its first round, woken by the first call, is the warm-up (index, model)
        # other processes' writes wake it too where the ledger can tell (PostgreSQL's LISTEN/NOTIFY)
        self._unwatch = self.memory.ledger.watch(self._heard)

    def notify(self) -> None:
        self._wake.set()

    def _heard(self) -> None:
        """Another process wrote: catch up. Before this process's first call only when it follows
        the log while idle (a stateless replica behind a load balancer, whose first request should
        find its index ready); an idle client window loads nothing (its warm-up reads those writes)."""
        if self._warm or self.follow_when_idle:
            self._wake.set()

    def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        poll = self.memory.settings.index_poll_seconds
        while not self._stop.is_set():
            if not self._wake.wait(poll) and not self._behind():
                continue  # polled (index_poll_seconds): nothing written elsewhere since
            if self._stop.wait(INDEX_DEBOUNCE_S):
                return
            self._wake.clear()
            try:
                if self._warm:
                    self.memory.sync_index()  # the model and index are loaded: only catch up
                else:
                    self.memory.warm_up()
                    self._warm = True
            except Exception:
                log.exception("background index sync failed; searches will retry it")

    def _behind(self) -> bool:
        try:
            return self.memory.index.is_behind(self.memory.ledger)
        except Exception:  # unreadable state: the sync finds out, and rebuilds if it must
            return True


class CallLimits:
    """Where tool calls run: each caller's calls at most `per_caller` at a time on the call threads,
    its waiting calls at most `waits_per_caller` at a time on threads of their own. So one caller,
    however many calls it sends, holds a bounded share of the threads, and a call that waits
    (memorize_status with wait_seconds) never keeps another caller's quick call from a thread."""

    def __init__(self, per_caller: int, waits_per_caller: int) -> None:
        self.per_caller = per_caller
        self.waits_per_caller = waits_per_caller
        self._limiters: dict[str, CapacityLimiter] = {}
        self._waiting: dict[str, int] = {}
        self._threads: CapacityLimiter | None = None
        self._wait_threads: CapacityLimiter | None = None

    async def run(self, caller: str, waits: bool, fn: Callable[[], Any]) -> Any:
        """Run `fn` on a worker thread within `caller`'s limits; ToolError if it may not wait now."""
        if self._threads is None or self._wait_threads is None:  # made in the event loop that uses them
            self._threads, self._wait_threads = CapacityLimiter(CALL_THREADS), CapacityLimiter(WAIT_THREADS)
        if not waits:
            limiter = self._limiters.setdefault(caller, CapacityLimiter(self.per_caller))
            async with limiter:
                return await anyio.to_thread.run_sync(fn, limiter=self._threads)
        if self._waiting.get(caller, 0) >= self.waits_per_caller:
            raise ToolError(
                f"wait_seconds: {caller!r} already has {self.waits_per_caller} calls waiting (max_waits_per_token); "
                "call again when one has returned, or ask without wait_seconds"
            )
        self._waiting[caller] = self._waiting.get(caller, 0) + 1
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._wait_threads)
        finally:
            self._waiting[caller] -= 1
            if not self._waiting[caller]:
                del self._waiting[caller]


def _asks_to_wait(arguments: dict[str, Any]) -> bool:
    wait = arguments.get("wait_seconds") if isinstance(arguments, dict) else None
    return isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0


class ServerState:
    """What the handlers of one server process share; the memory is opened by the lifespan or,
    with `open_on_demand`, by the first call that needs it."""

    def __init__(
        self,
        settings: Settings,
        load_curator: Callable[[], Curator] | None = None,
        *,
        open_on_demand: bool = False,
    ) -> None:
        self.settings = settings
        self.context = CallContext(namespace=settings.namespace, source="client")
        self._memory: Memory | None = None
        self.indexer: BackgroundIndexer | None = None
        self._called = False
        self.worker: CurationWorker | None = None
        self._load_curator = load_curator
        self.limits = CallLimits(settings.max_calls_per_token, settings.max_waits_per_token)
        self.open_on_demand = open_on_demand
        self._opening = threading.Lock()
        self._stopping = False

    def call_context(self) -> CallContext:
        """The caller's context: the namespace its HTTP request was granted, else this process's."""
        namespace = request_namespace()
        return self.context if namespace is None else replace(self.context, namespace=namespace)

    @property
    def memory(self) -> Memory:
        memory = self._memory
        if memory is None and self.open_on_demand:
            memory = self.open()
        if memory is None:
            raise ToolError("the memory store is not open (the server is starting or stopping)")
        return memory

    def open(self) -> Memory | None:
        """Open the memory (once; None when the server is stopping) and start what serves it."""
        with self._opening:
            if self._memory is None and not self._stopping:
                from mcp_memalpha.memory import Memory  # with the store: most of what a call imports

                self._attach(Memory(self.settings).open())
                log.info("memory at %s (namespace %r)", self.settings.data_dir, self.settings.namespace)
            return self._memory

    def _attach(self, memory: Memory) -> None:
        self.indexer = BackgroundIndexer(memory, follow_when_idle=self.settings.http_stateless)
        self.indexer.start()
        if self.settings.curates_here:  # else `mcp-memalpha worker` processes run the queued jobs
            from mcp_memalpha.curation import CurationWorker, load_policy

            load = self._load_curator or partial(load_policy, self.settings)
            self.worker = CurationWorker(memory, load, on_write=self.indexer.notify)
            self.worker.start()
        self._memory = memory

    def close(self) -> None:
        """Stop what serves the memory and close it; nothing opens it again."""
        with self._opening:
            self._stopping = True
            memory, self._memory = self._memory, None
        if self.worker is not None:
            self.worker.stop()
        if self.indexer is not None:
            self.indexer.stop()
        if memory is not None:
            memory.close()

    def first_call(self) -> None:
        """Start the warm-up (LanceDB, the embedding model: ~230 MB) when the first call comes, not
        at start: most client windows idle most of the time, and a call usually precedes a search."""
        if not self._called and self.indexer is not None:
            self._called = True
            self.indexer.notify()

    def after(self, spec: ToolSpec[Any, Any]) -> None:
        """Wake whoever a call leaves work for: the indexer after a write, the curator after memorize."""
        if not spec.read_only and self.indexer is not None:
            self.indexer.notify()
        if spec.name == "memorize" and self.worker is not None:
            self.worker.notify()

    def check_curator(self) -> None:
        if self.worker is not None and self.worker.load_error is not None:
            raise ToolError(
                f"policy: the curator model {self.settings.policy!r} could not be loaded "
                f"({self.worker.load_error}); memorize is unavailable until the server is restarted with a "
                "working --policy"
            )


def build_server(
    settings: Settings, *, load_curator: Callable[[], Curator] | None = None, open_on_demand: bool = False
) -> MCPServer[ServerState]:
    """The MCP server. With `settings.policy` on, `load_curator` builds the curator (default: the
    model the policy names, through `mcp_memalpha.policy.load_curator`; tests pass a scripted one).

    The memory opens when the server starts, or with `open_on_demand` at the first call that needs
    it: a stdio client window answers `initialize` and `tools/list` without the store's modules, and
    one that is never called never opens it. A server that curates here, or serves HTTP (a health
    check to answer, a log to follow), opens it at start."""
    state = ServerState(settings, load_curator, open_on_demand=open_on_demand and not settings.curates_here)

    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        if not state.open_on_demand:
            state.open()
        try:
            yield state
        finally:
            state.close()

    server: MCPServer[ServerState] = _Server(
        "mcp-memalpha",
        title="Mem-α memory",
        instructions=instructions(settings),
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=[_mcp_tool(entry, state) for entry in entries(curation=settings.policy_on)],
    )
    _add_resources_and_prompts(server, state)
    _add_health_route(server, state)
    return server


# The load balancers' health check: answered to anyone, without a token, since a balancer holds
# none (`http_security`); it reveals only whether this process can serve and how far its index lags.
HEALTH_PATH = "/healthz"


def health(state: ServerState) -> tuple[int, dict[str, Any]]:
    """What `/healthz` answers a load balancer: 200 while the ledger answers a read (and, with
    `health_max_index_lag` set, the index is at most that far behind it), else 503; the body says
    why, and how far the index lags the ledger (operations it has not applied yet)."""
    settings = state.settings
    curation = "off" if not settings.policy_on else "in-process" if settings.curates_here else "workers"
    try:
        memory = state.memory  # refused while the server starts or stops
        with memory.ledger.read() as tx:
            head = tx.head()
    except Exception as exc:  # any failure to read: this replica should get no traffic
        detail = str(exc) if isinstance(exc, ToolError | MemalphaError) else f"{type(exc).__name__}: {exc}"
        return 503, {"status": "unavailable", "ledger": {"reachable": False, "error": detail}, "curation": curation}
    applied = memory.index.applied_seq()  # None: no complete build yet (it is being built)
    lag = head - (applied or 0)
    report: dict[str, Any] = {
        "status": "ok",
        "ledger": {"reachable": True, "head_seq": head},
        "index": {"built": applied is not None, "applied_seq": applied, "lag": lag},
        "curation": curation,
    }
    limit = settings.health_max_index_lag
    if limit is not None and lag > limit:
        report["status"] = "lagging"
        report["index"]["error"] = f"{lag} operations behind the ledger (health_max_index_lag is {limit})"
        return 503, report
    return 200, report


def _add_health_route(server: MCPServer[ServerState], state: ServerState) -> None:
    """`GET /healthz` on the HTTP transport (answered without a token: `http_security`)."""

    @server.custom_route(HEALTH_PATH, methods=["GET"], include_in_schema=False)
    async def healthz(_: Request) -> Response:
        from starlette.responses import JSONResponse

        status, body = await anyio.to_thread.run_sync(health, state)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


class _Server(MCPServer[ServerState]):
    """The SDK's server, whose stdio transport answers a line it cannot read with a JSON-RPC error.

    The SDK's stdio reader hands such a line (invalid JSON after UTF-8 repair, a lone surrogate,
    nesting past the parser's depth) to the session as an exception, which only logs it: the
    client never hears back and waits out its timeout.
    """

    async def run_stdio_async(self) -> None:
        async with stdio_server() as (read_stream, write_stream):
            to_session, from_transport = create_context_streams[SessionMessage | Exception](0)

            async def answer_unreadable() -> None:
                async with to_session:
                    async for item in read_stream:
                        if isinstance(item, Exception):
                            reply = unreadable_reply(item)
                            if reply is not None:
                                await write_stream.send(SessionMessage(reply))
                        else:
                            await to_session.send(item)

            async with anyio.create_task_group() as group:
                group.start_soon(answer_unreadable)
                options = self._lowlevel_server.create_initialization_options()
                await self._lowlevel_server.run(from_transport, write_stream, options)


# The id of a request whose line cannot be parsed whole: among the top-level keys before any nesting.
_LEADING_ID = re.compile(r'"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,256}")')


def unreadable_reply(error: Exception) -> JSONRPCError | None:
    """The JSON-RPC error for a stdin line the SDK could not read (None: a notification, not answered).

    The id is recovered where the line allows it, so the client's pending request ends; the
    reply names the parser's reason, never the (possibly huge) input.
    """
    details = error.errors(include_url=False) if isinstance(error, ValidationError) else []
    line = details[0].get("input") if details else None
    first = details[0] if details else {"type": "", "msg": str(error)}
    code = PARSE_ERROR if first["type"] == "json_invalid" else INVALID_REQUEST
    message = ("Parse error: " if code == PARSE_ERROR else "Invalid request: ") + str(first["msg"])[:300]
    request_id = _request_id(line)
    if request_id is _NOTIFICATION:
        return None  # a notification gets no reply, not even an error
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))


_NOTIFICATION = object()


def _request_id(raw: object) -> Any:
    """The id of the request `raw` (a line, or what it parsed to): None if it cannot be told,
    `_NOTIFICATION` if it has none."""
    parsed = raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            prefix = re.split(r"[\[{]", raw[:4096].lstrip().removeprefix("{"), maxsplit=1)[0]
            found = _LEADING_ID.search(prefix)
            return json.loads(found.group(1)) if found else None
    if not isinstance(parsed, dict):
        return None
    found = parsed.get("id")
    if found is None and "method" in parsed:
        return _NOTIFICATION
    return found if isinstance(found, int | str) and not isinstance(found, bool) else None


class _RawArguments(ArgModelBase):
    """Hands the call's arguments to the tool untouched: `ToolSpec.parse` validates them (one
    validator, errors that name the field), against the schema it also publishes."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.__pydantic_extra__ or {})}


def _mcp_tool(entry: Entry, state: ServerState) -> Tool:
    """An SDK tool for the catalog's `entry`: its schemas, description and annotations as published.

    Its spec (`tools.py`) is imported at the first call, which validates the arguments and the result.
    The (blocking) store runs on a worker thread, within the caller's limits (`CallLimits`).
    A spec that can report progress gets the request's `Context` to send it with.
    """

    def call(arguments: dict[str, Any], progress: Progress | None = None) -> Any:
        spec = tool_spec(entry.name)
        tool.fn_metadata.output_model = spec.result  # what the SDK validates and serializes the result with
        try:
            memory = state.memory  # a stdio window's first call opens it
            state.first_call()
            if spec.name == "memorize":
                state.check_curator()
            result = spec.call(memory, state.call_context(), arguments, progress)
        except MemalphaError as exc:
            raise ToolError(str(exc)) from None
        state.after(spec)
        return result

    async def run(arguments: dict[str, Any]) -> Any:
        return await state.limits.run(_caller(), _asks_to_wait(arguments), partial(call, arguments))

    async def run_reporting(arguments: dict[str, Any], context: Context) -> Any:
        work = partial(call, arguments, _progress_reporter(context))
        return await state.limits.run(_caller(), _asks_to_wait(arguments), work)

    tool = Tool(
        fn=run_reporting if entry.reports_progress else run,
        name=entry.name,
        title=entry.title,
        description=entry.description,
        parameters=entry.input_schema,
        fn_metadata=FuncMetadata(arg_model=_RawArguments, output_schema=entry.output_schema),
        is_async=True,
        context_kwarg="context" if entry.reports_progress else None,
        annotations=ToolAnnotations.model_validate(entry.annotations),
    )
    return tool


@cache
def tool_spec(name: str) -> ToolSpec[Any, Any]:
    """The spec of the published tool `name` (imports `tools.py` and its models the first time)."""
    from mcp_memalpha.tools import CURATION_TOOLS, TOOLS

    return next(spec for spec in (*TOOLS, *CURATION_TOOLS) if spec.name == name)


def _caller() -> str:
    """Whose limits a call counts against: its HTTP token's, else this process's client."""
    return request_caller() or "this process's client"


def _progress_reporter(context: Context) -> Progress:
    """Send progress notifications from the tool's worker thread through the request's context
    (a no-op unless the client passed a progress token)."""

    def report(progress: float, total: float | None, message: str) -> None:
        try:
            anyio.from_thread.run(context.report_progress, progress, total, message)
        except Exception:  # the client went away: the answer will not be read either
            log.debug("could not send a progress notification", exc_info=True)

    return report


def _add_resources_and_prompts(server: MCPServer[ServerState], state: ServerState) -> None:
    @server.resource(
        "memory://core",
        name="core_memory",
        title="Core memory",
        description="The core memory paragraph: what is always worth knowing about the user.",
        mime_type="text/plain",
    )
    def core_resource() -> str:
        return state.memory.core(state.call_context()).content

    @server.prompt(
        name="memory_context",
        title="Memory context",
        description=(
            "Render the memory for a conversation: core paragraph plus the memories most relevant to `topic` "
            "(or the most recent ones when no topic is given)."
        ),
    )
    def memory_context(topic: str | None = None, max_items: int = 20) -> str:
        from mcp_memalpha.memory import MAX_TOP_K
        from mcp_memalpha.tools import render_memory

        memory, ctx = state.memory, state.call_context()
        state.first_call()
        max_items = max(1, min(max_items, MAX_TOP_K))
        try:
            if topic and topic.strip():
                items = [hit.item for hit in memory.search(ctx, topic, top_k=max_items).hits]
            else:
                items = _recent(memory, ctx, max_items)
        except MemalphaError as exc:
            raise ToolError(str(exc)) from None
        header = "What you remember about the user" + (f", relevant to: {topic}" if topic else "") + ".\n\n"
        return header + render_memory(memory.core(ctx), items)


def _recent(memory: Memory, ctx: CallContext, count: int) -> list[Any]:
    """The newest `count` items of each type, oldest first."""
    items: list[Any] = []
    for kind in ("semantic", "episodic"):
        items += reversed(memory.list_items(ctx, kind, limit=count, newest_first=True).items)
    return items
