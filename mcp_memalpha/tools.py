"""THE tool interface: one definition per tool (name, description, arguments, result, handler).

The MCP server, the curator policy and the training environment all read the tools from here;
no other module declares a tool schema. Names and arguments of the four Mem-α tools are kept
exactly as Memalpha-4B was trained on them (`new_memory_insert`, `memory_update`,
`memory_delete`, `search_memory`); everything we add is an optional argument or a new tool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from mcp_memalpha import schemas
from mcp_memalpha.clock import zone_name
from mcp_memalpha.context import CallContext
from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.excerpt import render_hit
from mcp_memalpha.ids import normalize_id
from mcp_memalpha.jobs import Job, JobQueue, JobState
from mcp_memalpha.match import STRONG_AT, WEAK_AT, MatchLevel
from mcp_memalpha.memory import MAX_TOP_K, Hit, Memory
from mcp_memalpha.store.ledger import CoreRow, ItemRow, OpRow
from mcp_memalpha.timewords import Span
from mcp_memalpha.tokens import TOKENIZER_NAME, count_tokens
from mcp_memalpha.validation import validation_problems
from mcp_memalpha.vocabulary import ItemType, MemoryType, Order, SearchMethod, memory_type_name, search_method_name

# ---- argument types --------------------------------------------------------------------------
# The models validate every argument (this is the one boundary a tool call crosses) and hand the
# handlers canonical values: each spelling the Literal lists (the schema clients see) is mapped to
# its canonical name by `vocabulary` before the Literal checks it.


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _no_core(value: Any) -> Any:
    value = memory_type_name(value)
    if value == "core":
        raise ValueError(
            "core memory is not a list of items: it cannot be inserted or searched. Replace it with "
            "memory_update(memory_type='core', new_content=...) and read it with core_memory_read"
        )
    return value


ItemTypeArg = Annotated[
    Literal["episodic", "semantic", "episodic_memory", "semantic_memory"],
    BeforeValidator(_no_core),
    Field(description="'episodic' (dated events) or 'semantic' (facts)."),
]
AnyTypeArg = Annotated[
    Literal["core", "episodic", "semantic", "core_memory", "episodic_memory", "semantic_memory"],
    BeforeValidator(memory_type_name),
    Field(description="'core': the paragraph about the user."),
]
TimestampArg = Annotated[
    str | None,
    Field(
        description="When it happened (episodic) or holds since (semantic): ISO-8601, a date with its year "
        "('8 May 2023 1:56 pm') or words ('yesterday').",
    ),
]
ExpectedVersionArg = Annotated[
    int | None,
    Field(
        ge=0,
        description="The version you read: refused, with the current one, if it has changed.",
    ),
]
MemoryIdArg = Annotated[
    str | None,
    Field(description="Needed for episodic/semantic (an existing id of that type); omit for core."),
]


def _item_type(value: str) -> ItemType:
    """A validated item type argument: the validator has already made it canonical."""
    return cast(ItemType, value)


def _memory_type(value: str) -> MemoryType:
    return cast(MemoryType, value)


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InsertArgs(_Args):
    memory_type: ItemTypeArg
    content: Annotated[
        str, Field(description="One self-contained sentence or short paragraph; split long text into several.")
    ]
    timestamp: TimestampArg = None
    on_duplicate: Annotated[
        Literal["insert", "skip"],
        BeforeValidator(_lower),
        Field(description="'skip': if a (near) duplicate exists, insert nothing and return it."),
    ] = "insert"


class UpdateArgs(_Args):
    memory_type: AnyTypeArg
    new_content: Annotated[str, Field(description="The whole new text.")]
    memory_id: MemoryIdArg = None
    timestamp: Annotated[
        str | None, Field(description="A new event time (as new_memory_insert takes it); not for core.")
    ] = None
    expected_version: ExpectedVersionArg = None


class DeleteArgs(_Args):
    memory_type: AnyTypeArg
    memory_id: MemoryIdArg = None
    expected_version: ExpectedVersionArg = None


class SearchArgs(_Args):
    query: Annotated[str, Field(description="Words or a question (max 2000 characters by default).")]
    memory_type: Annotated[
        Literal["episodic", "semantic", "episodic_memory", "semantic_memory"] | None,
        BeforeValidator(_no_core),
        Field(description="Only 'episodic' or only 'semantic'; omit for both."),
    ] = None
    search_method: Annotated[
        Literal["hybrid", "bm25", "vector", "text-embedding"],
        BeforeValidator(search_method_name),
        Field(description="hybrid: keywords + meaning; bm25: keywords; vector: meaning."),
    ] = "hybrid"
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="Most results.")] = 10
    start_time: Annotated[
        str | None,
        Field(description="Only memories at or after this event time ('last week': from its start)."),
    ] = None
    end_time: Annotated[
        str | None,
        Field(description="Only memories at or before this (a date: through that day); not before start_time."),
    ] = None
    order: Annotated[
        Order,
        BeforeValidator(_lower),
        Field(description="relevance (best first) or chronological (oldest first)."),
    ] = "relevance"
    max_tokens: Annotated[
        int | None,
        Field(ge=1, le=100_000, description="Token budget for the results' text."),
    ] = None
    excerpt_tokens: Annotated[
        int | None,
        Field(
            ge=0,
            le=100_000,
            description="Longest text per result in tokens, twice it for the first 4 (0: whole; default 36).",
        ),
    ] = None
    min_score: Annotated[
        float | None,
        Field(
            ge=0,
            le=1,
            description=f"Drop results whose match_score is below this ({WEAK_AT}: weak, {STRONG_AT}: strong).",
        ),
    ] = None


class GetArgs(_Args):
    memory_ids: Annotated[list[str], Field(min_length=1, max_length=MAX_TOP_K, description="Ids to fetch.")]


class ListArgs(_Args):
    memory_type: ItemTypeArg
    limit: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="Page size.")] = 20
    cursor: Annotated[str | None, Field(description="The previous page's next_cursor.")] = None
    newest_first: Annotated[bool, Field(description="Newest first.")] = False
    deleted: Annotated[bool, Field(description="Deleted ones instead.")] = False


class RestoreArgs(_Args):
    memory_type: ItemTypeArg
    memory_id: Annotated[str, Field(description="Id of the deleted memory.")]
    expected_version: ExpectedVersionArg = None


class HistoryArgs(_Args):
    memory_id: Annotated[str, Field(description="Memory id.")]


class NoArgs(_Args):
    pass


JobIdArg = Annotated[str, Field(description="The job_id memorize returned.")]
MAX_WAIT_SECONDS = 300


class MemorizeArgs(_Args):
    chunk: Annotated[
        str,
        Field(
            description="Conversation or document text, best with a dated header ('[Dialogue at 2024-01-03 10:00]'); "
            "at most policy_max_chunk_tokens tokens (2048 by default)."
        ),
    ]
    timestamp: Annotated[
        str | None,
        Field(description="When the chunk took place (a date/time with its year); dates the events recorded."),
    ] = None


class MemorizeStatusArgs(_Args):
    job_id: JobIdArg
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Wait up to this long for the job to finish (0: answer at once).",
        ),
    ] = 0


class MemorizeUndoArgs(_Args):
    job_id: JobIdArg


class MemorizeRetryArgs(_Args):
    job_id: JobIdArg


# ---- results ---------------------------------------------------------------------------------


class MemoryOut(BaseModel):
    memory_id: str
    memory_type: Literal["episodic", "semantic"]
    content: str
    event_time: str | None = Field(description="When it happened / holds since (ISO-8601), if known.")
    version: int
    source: str = Field(description="Who wrote the current version: 'client', 'policy' or 'import'.")
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, row: ItemRow) -> MemoryOut:
        return cls(
            memory_id=row.id,
            memory_type=row.memory_type,
            content=row.content,
            event_time=row.event_time,
            version=row.version,
            source=row.source,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class SimilarOut(BaseModel):
    memory_id: str
    score: float = Field(description="Embedding cosine with the new content (1 = the same text).")
    content: str
    updated_at: str


class InsertOut(MemoryOut):
    skipped: bool = Field(False, description="True when on_duplicate='skip' found a duplicate: nothing was inserted.")
    similar: list[SimilarOut] = Field(
        default_factory=list, description="Existing memories of the same type that say nearly the same thing."
    )
    hint: str | None = Field(None, description="What to do about `similar`, when there is any.")


class CoreOut(BaseModel):
    content: str = Field(description="The core paragraph ('' when empty).")
    version: int = Field(description="0 until it is first written.")
    updated_at: str | None
    tokens: int = Field(description=f"Size in tokens ({TOKENIZER_NAME}).")
    capacity_tokens: int

    @classmethod
    def of(cls, row: CoreRow, capacity: int) -> CoreOut:
        return cls(
            content=row.content,
            version=row.version,
            updated_at=row.updated_at,
            tokens=count_tokens(row.content),
            capacity_tokens=capacity,
        )


class UpdateOut(BaseModel):
    memory_type: Literal["core", "episodic", "semantic"]
    memory_id: str | None = Field(description="The updated item; null for core memory.")
    version: int = Field(description="The new version.")
    content: str
    event_time: str | None = None


class DeleteOut(BaseModel):
    memory_type: Literal["core", "episodic", "semantic"]
    memory_id: str | None = Field(description="The deleted item; null when core memory was cleared.")
    version: int = Field(description="Version of the deletion (history keeps every earlier version).")
    deleted: bool = True


class SearchHitOut(BaseModel):
    """One result, shaped for a model to read: the text once (not content and text, which would
    double what a client puts in its context); memory_get gives the stored content exactly."""

    memory_id: str
    memory_type: Literal["episodic", "semantic"]
    event_time: str | None
    version: int
    score: float = Field(description="Relevance; higher is better (not comparable across methods).")
    text: str = Field(
        description="The memory as a reader should see it: '[date] content (relative dates resolved)'; "
        "for a long memory, its sentences most relevant to the query (see excerpt)."
    )
    excerpt: bool = Field(description="True when text shows only part of the content (memory_get has it whole).")
    match_score: float = Field(
        description="How well this memory answers the query, 0 to 1, comparable across queries (min_score uses it)."
    )
    created_at: str
    updated_at: str = Field(description="When the current version was written: the newer of two memories wins.")

    @classmethod
    def of(cls, hit: Hit) -> SearchHitOut:
        row = hit.item
        return cls(
            memory_id=row.id,
            memory_type=row.memory_type,
            event_time=row.event_time,
            version=row.version,
            score=round(hit.score, 6),
            text=hit.text,
            excerpt=hit.excerpt,
            match_score=hit.match,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class TimeRangeOut(BaseModel):
    start: str | None = Field(description="Start of the event-time filter used (local time in `zone`), if any.")
    end: str | None = Field(description="End of the event-time filter used (inclusive), if any.")
    start_time: str | None = Field(description="The start_time given, as it was read.")
    end_time: str | None = Field(description="The end_time given, as it was read.")
    zone: str


class QueryTimeOut(BaseModel):
    phrase: str = Field(description="The words of the query that name a time, e.g. 'last month'.")
    start: str
    end: str
    zone: str
    note: str = "memories from this range rank first; memories from other times still follow"

    @classmethod
    def of(cls, span: Span, zone: str) -> QueryTimeOut:
        return cls(phrase=span.phrase, start=span.start.iso, end=span.end.iso, zone=zone)


class SearchOut(BaseModel):
    match: MatchLevel = Field(
        description="How good the best match is: 'strong' (memory very likely holds the answer), 'weak' (related, "
        "maybe not the answer) or 'none' (nothing stored matches: say you don't know)."
    )
    best_match_score: float | None = Field(description="The best result's match_score (before min_score).")
    results: list[SearchHitOut]
    search_method: str
    total_tokens: int = Field(description="Tokens of the results' text.")
    truncated: bool = Field(description="True when max_tokens left out some of the top_k results.")
    time_range: TimeRangeOut | None = Field(
        None, description="The absolute range start_time/end_time were read as (present when either was given)."
    )
    query_time: QueryTimeOut | None = Field(
        None, description="A time the query itself speaks of ('last month'): a preference, not a filter."
    )


class GetOut(BaseModel):
    memories: list[MemoryOut]
    missing: list[str] = Field(description="Requested ids that match no live memory in this namespace.")


class ListOut(BaseModel):
    memory_type: Literal["episodic", "semantic"]
    memories: list[MemoryOut]
    total: int = Field(description="Memories of this type in the namespace (live, or deleted when listing those).")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class VersionOut(BaseModel):
    version: int
    operation: str = Field(description="insert, update, delete, restore or import.")
    at: str = Field(description="When this version was written (UTC).")
    content: str | None = Field(description="The text of this version; null for a deletion.")
    event_time: str | None
    source: str
    job_id: str | None

    @classmethod
    def of(cls, op: OpRow) -> VersionOut:
        return cls(
            version=op.version,
            operation=op.op,
            at=op.at,
            content=op.content,
            event_time=op.event_time,
            source=op.source,
            job_id=op.job_id,
        )


class HistoryOut(BaseModel):
    memory_id: str
    versions: list[VersionOut] = Field(description="Every version, oldest first.")


JOB_STATES = (
    "queued, running, done, failed (after its last attempt; its writes reverted except any that another writer "
    "changed since, which `kept` lists; memorize_retry queues it again) or undone"
)


class MemorizeOut(BaseModel):
    job_id: str = Field(description="Pass it to memorize_status and memorize_undo.")
    state: JobState = Field(description=JOB_STATES)
    position: int = Field(description="Unfinished jobs ahead of this one in the queue (0: it runs next).")


class CallOut(BaseModel):
    step: int = Field(description="The curator's generation step that made the call (from 1).")
    name: str
    arguments: dict[str, Any]
    ok: bool = Field(description="Whether the call was executed; if not, `error` says why.")
    output: Any = Field(None, description="The tool's result when executed.")
    error: str | None = None


class PromptOut(BaseModel):
    tokens: int = Field(description="Prompt tokens the model evaluated.")
    sha256: str = Field(description="sha256 of those token ids in decimal, comma-separated (e.g. '151644,872,198').")


class KeptOut(BaseModel):
    memory_type: Literal["core", "episodic", "semantic"]
    memory_id: str | None = Field(description="The memory left in place; null for core memory.")
    reason: str = Field(description="Who changed it after the job, to which version, and how to revert it later.")


class MemorizeStatusOut(BaseModel):
    job_id: str
    state: JobState = Field(description=JOB_STATES)
    position: int | None = Field(description="Unfinished jobs ahead of it while it is unfinished; else null.")
    attempts: int = Field(description="Runs started (a run interrupted by a crash is reverted and run again).")
    calls: list[CallOut] = Field(description="The tool calls of the current (or last) run so far, in order.")
    executed: int = Field(description="How many of the calls were executed.")
    error: str | None = Field(description="Why the job failed, or why an earlier attempt did.")
    created_at: str
    started_at: str | None = Field(description="When the current (or last) attempt started.")
    finished_at: str | None
    steps: int | None = Field(None, description="Generations the curator ran (when done).")
    seconds: float | None = Field(None, description="Curation time of the last run (when done).")
    wire_format: str | None = Field(None, description="The format the curator prompted its model in (when done).")
    wire_format_reason: str | None = Field(None, description="Why that format: the setting or the model's metadata.")
    prompts: list[PromptOut] | None = Field(
        None, description="Per generation, the prompt the model evaluated, as a token count and digest (when done)."
    )
    kept: list[KeptOut] = Field(
        default_factory=list,
        description="Writes of a failed job left in place because another writer changed them after the job "
        "wrote them, each with why; memorize_undo reverts them once they are back to what the job wrote.",
    )

    @classmethod
    def of(cls, job: Job, position: int | None) -> MemorizeStatusOut:
        calls = [CallOut.model_validate(call) for call in job.calls]
        result = job.result or {}
        return cls(
            job_id=job.id,
            state=job.state,
            position=position,
            attempts=job.attempts,
            calls=calls,
            executed=sum(call.ok for call in calls),
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            steps=result.get("steps"),
            seconds=result.get("seconds"),
            wire_format=result.get("wire_format"),
            wire_format_reason=result.get("wire_format_reason"),
            prompts=result.get("prompts"),
            kept=[KeptOut.model_validate(entry) for entry in result.get("kept") or []],
        )


class RevertedOut(BaseModel):
    memory_type: Literal["core", "episodic", "semantic"]
    memory_id: str | None = Field(description="The memory put back; null for core memory.")
    action: Literal["deleted", "restored", "reverted"] = Field(
        description="deleted: the job had created it; restored: the job had deleted it; reverted: the job had "
        "changed it and its earlier content is back."
    )
    version: int = Field(description="The new version the undo wrote (memory_history shows it).")


class MemorizeUndoOut(BaseModel):
    job_id: str
    state: Literal["undone", "failed"] = Field(
        description="undone; or failed when some of a failed job's kept writes still cannot be reverted (kept)."
    )
    reverted: list[RevertedOut] = Field(description="Every memory the undo changed (none if the job changed nothing).")
    kept: list[KeptOut] = Field(
        default_factory=list,
        description="What could not be reverted yet, each with why: another writer changed it after the job.",
    )


# ---- handlers --------------------------------------------------------------------------------


def _insert(memory: Memory, ctx: CallContext, a: InsertArgs) -> InsertOut:
    done = memory.insert_checked(ctx, _item_type(a.memory_type), a.content, a.timestamp, a.on_duplicate)
    similar = [
        SimilarOut(memory_id=row.id, score=score, content=row.content, updated_at=row.updated_at)
        for row, score in done.similar
        if not (done.skipped and row.id == done.item.id)
    ]
    hint = None
    if done.skipped:
        hint = f"not inserted: memory '{done.item.id}' already says this; update it instead if something changed"
    elif similar:
        hint = (
            f"update instead? memory '{similar[0].memory_id}' says nearly the same: memory_update it and "
            "delete this one if it replaces it"
        )
    base = MemoryOut.of(done.item).model_dump()
    return InsertOut(**base, skipped=done.skipped, similar=similar, hint=hint)


def _update(memory: Memory, ctx: CallContext, a: UpdateArgs) -> UpdateOut:
    kind = _memory_type(a.memory_type)
    if kind == "core":
        if a.memory_id is not None and a.memory_id.strip():
            raise InvalidArgument("memory_id", "core memory has no ids; omit memory_id to replace the paragraph")
        if a.timestamp is not None:
            raise InvalidArgument("timestamp", "core memory has no event time; omit timestamp")
        core = memory.set_core(ctx, a.new_content, a.expected_version)
        return UpdateOut(memory_type="core", memory_id=None, version=core.version, content=core.content)
    row = memory.update(ctx, kind, a.memory_id, a.new_content, a.timestamp, a.expected_version)
    return UpdateOut(
        memory_type=row.memory_type,
        memory_id=row.id,
        version=row.version,
        content=row.content,
        event_time=row.event_time,
    )


def _delete(memory: Memory, ctx: CallContext, a: DeleteArgs) -> DeleteOut:
    kind = _memory_type(a.memory_type)
    if kind == "core":
        if a.memory_id is not None and a.memory_id.strip():
            raise InvalidArgument("memory_id", "core memory has no ids; omit memory_id to clear it")
        core = memory.clear_core(ctx, a.expected_version)
        return DeleteOut(memory_type="core", memory_id=None, version=core.version)
    row = memory.delete(ctx, kind, a.memory_id, a.expected_version)
    return DeleteOut(memory_type=row.memory_type, memory_id=row.id, version=row.version)


def _search(memory: Memory, ctx: CallContext, a: SearchArgs) -> SearchOut:
    outcome = memory.search(
        ctx,
        a.query,
        memory_types=[_item_type(a.memory_type)] if a.memory_type else None,
        method=cast(SearchMethod, a.search_method),
        top_k=a.top_k,
        start_time=a.start_time,
        end_time=a.end_time,
        order=a.order,
        max_tokens=a.max_tokens,
        excerpt_tokens=a.excerpt_tokens,
        min_score=a.min_score,
    )
    zone = zone_name(memory.zone)
    time_range = None
    if outcome.start is not None or outcome.end is not None:
        time_range = TimeRangeOut(
            start=outcome.start.start.iso if outcome.start else None,
            end=outcome.end.end.iso if outcome.end else None,
            start_time=outcome.start.phrase if outcome.start else None,
            end_time=outcome.end.phrase if outcome.end else None,
            zone=zone,
        )
    return SearchOut(
        match=outcome.match,
        best_match_score=outcome.best_match,
        results=[SearchHitOut.of(hit) for hit in outcome.hits],
        search_method=a.search_method,
        total_tokens=outcome.total_tokens,
        truncated=outcome.truncated,
        time_range=time_range,
        query_time=QueryTimeOut.of(outcome.prior, zone) if outcome.prior else None,
    )


def _get(memory: Memory, ctx: CallContext, a: GetArgs) -> GetOut:
    items, missing = memory.get(ctx, a.memory_ids)
    return GetOut(memories=[MemoryOut.of(row) for row in items], missing=missing)


def _list(memory: Memory, ctx: CallContext, a: ListArgs) -> ListOut:
    kind = _item_type(a.memory_type)
    page = memory.list_items(ctx, kind, a.limit, a.cursor, a.newest_first, a.deleted)
    return ListOut(
        memory_type=kind,
        memories=[MemoryOut.of(row) for row in page.items],
        total=page.total,
        next_cursor=page.next_cursor,
    )


def _restore(memory: Memory, ctx: CallContext, a: RestoreArgs) -> MemoryOut:
    return MemoryOut.of(memory.restore(ctx, _item_type(a.memory_type), a.memory_id, a.expected_version))


def _history(memory: Memory, ctx: CallContext, a: HistoryArgs) -> HistoryOut:
    ops = memory.history(ctx, a.memory_id)
    return HistoryOut(memory_id=ops[0].item_id or a.memory_id, versions=[VersionOut.of(op) for op in ops])


def _core(memory: Memory, ctx: CallContext, a: NoArgs) -> CoreOut:
    return CoreOut.of(memory.core(ctx), memory.settings.core_capacity_tokens)


# (events so far, total if known, message): how a long call tells the client it is alive.
Progress = Callable[[float, float | None, str], None]


def _memorize(memory: Memory, ctx: CallContext, a: MemorizeArgs) -> MemorizeOut:
    job, position = JobQueue(memory.ledger, memory.settings).enqueue(ctx, a.chunk, a.timestamp)
    return MemorizeOut(job_id=job.id, state=job.state, position=position)


def _memorize_status(
    memory: Memory, ctx: CallContext, a: MemorizeStatusArgs, progress: Progress | None = None
) -> MemorizeStatusOut:
    queue = JobQueue(memory.ledger, memory.settings)
    if a.wait_seconds <= 0:
        return MemorizeStatusOut.of(*queue.status(ctx, a.job_id))
    reports = 0

    def report(job: Job, position: int | None) -> None:
        nonlocal reports
        if progress is not None:
            reports += 1  # progress must grow with each notification; calls restart on a rerun
            progress(reports, None, _progress_message(job, position))

    return MemorizeStatusOut.of(*queue.wait(ctx, a.job_id, a.wait_seconds, report))


def _progress_message(job: Job, position: int | None) -> str:
    if job.state == "queued":
        return f"job {job.id} queued, {position} unfinished jobs ahead"
    return f"job {job.id} {job.state}, {len(job.calls)} tool calls made"


def _memorize_retry(memory: Memory, ctx: CallContext, a: MemorizeRetryArgs) -> MemorizeOut:
    job, position = JobQueue(memory.ledger, memory.settings).retry(ctx, a.job_id)
    return MemorizeOut(job_id=job.id, state=job.state, position=position)


def _memorize_undo(memory: Memory, ctx: CallContext, a: MemorizeUndoArgs) -> MemorizeUndoOut:
    reverted, kept = JobQueue(memory.ledger, memory.settings).undo(ctx, a.job_id)
    return MemorizeUndoOut(
        job_id=normalize_id(a.job_id),
        state="failed" if kept else "undone",
        reverted=[RevertedOut.model_validate(r, from_attributes=True) for r in reverted],
        kept=[KeptOut.model_validate(k, from_attributes=True) for k in kept],
    )


# ---- the specs -------------------------------------------------------------------------------

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class ToolSpec(Generic[A, R]):
    name: str
    title: str
    description: str
    args: type[A]
    result: type[R]
    handler: Callable[[Memory, CallContext, A], R]
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    # One of the four tools Memalpha-4B was trained on (the curator's tools): MEMALPHA_TOOLS.
    memalpha: bool = False
    # The same handler, for a call whose transport can report progress (memorize_status).
    with_progress: Callable[[Memory, CallContext, A, Progress], R] | None = None

    def input_schema(self) -> dict[str, Any]:
        return schemas.input_schema(self.args.model_json_schema())

    def output_schema(self) -> dict[str, Any]:
        return schemas.output_schema(self.result.model_json_schema())

    def parse(self, arguments: dict[str, Any]) -> A:
        """Validate raw arguments; errors name each bad field and why."""
        if not isinstance(arguments, dict):
            raise InvalidArgument("arguments", f"must be a JSON object, not {type(arguments).__name__}")
        try:
            return self.args.model_validate(_unwrap_json_strings(self.args, arguments))
        except ValidationError as exc:
            raise InvalidArgument(*_first_error(exc, self.args)) from None

    def call(self, memory: Memory, ctx: CallContext, arguments: dict[str, Any], progress: Progress | None = None) -> R:
        parsed = self.parse(arguments)
        if progress is not None and self.with_progress is not None:
            return self.with_progress(memory, ctx, parsed, progress)
        return self.handler(memory, ctx, parsed)


def _unwrap_json_strings(model: type[BaseModel], arguments: dict[str, Any]) -> dict[str, Any]:
    """Some clients (and small models) send a list argument as a JSON string: accept it."""
    fixed = dict(arguments)
    for name, value in arguments.items():
        field = model.model_fields.get(name)
        if field is not None and isinstance(value, str) and value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            if isinstance(parsed, list) and "list" in str(field.annotation):
                fixed[name] = parsed
    return fixed


def _first_error(exc: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """The first bad field and every problem found. An unknown key is reported under `arguments`
    (quoted, since it can be any text) with the names the tool does take."""
    problems = []
    for problem in validation_problems(exc):
        if problem.kind == "extra_forbidden":
            known = ", ".join(model.model_fields) or "no arguments"
            problems.append(("arguments", f"unknown argument {str(problem.loc[-1])!r}; this tool takes: {known}"))
            continue
        problems.append((problem.field or "arguments", problem.message))
    field = problems[0][0]
    return field, "; ".join(f"{f}: {m}" if i else m for i, (f, m) in enumerate(problems))


TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        name="new_memory_insert",
        title="Insert a memory",
        description=(
            "Store an episodic memory (a dated event; give `timestamp`) or a semantic one (a fact or preference); "
            "core memory is set with memory_update. Returns it with its id, and in `similar` stored memories "
            "saying nearly the same: update one instead."
        ),
        args=InsertArgs,
        result=InsertOut,
        handler=_insert,
        memalpha=True,
    ),
    ToolSpec(
        name="memory_update",
        title="Update a memory",
        description=(
            "Replace one memory's content. For core, new_content is the whole paragraph about the user, refused "
            "(never cut) over its capacity, 512 tokens by default."
        ),
        args=UpdateArgs,
        result=UpdateOut,
        handler=_update,
        idempotent=False,
        memalpha=True,
    ),
    ToolSpec(
        name="memory_delete",
        title="Delete a memory",
        description=(
            "Delete an episodic/semantic memory by memory_id, or clear core memory; memory_restore brings a "
            "memory back."
        ),
        args=DeleteArgs,
        result=DeleteOut,
        handler=_delete,
        destructive=True,
        memalpha=True,
    ),
    ToolSpec(
        name="search_memory",
        title="Search memory",
        description=(
            "Find the memories most relevant to a query. A result's text is '[date] content', of a long memory "
            "its most relevant sentences (excerpt=true; memory_get has it whole); the newer updated_at wins. "
            "`match` rates the best: strong, weak or none (nothing stored answers: say you don't know). A time "
            "the query names ('last month') ranks its memories first."
        ),
        args=SearchArgs,
        result=SearchOut,
        handler=_search,
        read_only=True,
        idempotent=True,
        memalpha=True,
    ),
    ToolSpec(
        name="memory_get",
        title="Get memories",
        description="Memories by id, whole; ids that match no live memory are listed in `missing`.",
        args=GetArgs,
        result=GetOut,
        handler=_get,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="memory_list",
        title="List memories",
        description=(
            "Page through episodic or semantic memories by event time, oldest first unless newest_first; pass "
            "next_cursor back as cursor."
        ),
        args=ListArgs,
        result=ListOut,
        handler=_list,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="memory_restore",
        title="Restore a memory",
        description=(
            "Bring back a deleted memory (memory_list(deleted=true) lists them) as a new version; refused for "
            "one not deleted."
        ),
        args=RestoreArgs,
        result=MemoryOut,
        handler=_restore,
    ),
    ToolSpec(
        name="memory_history",
        title="History of a memory",
        description=(
            "Every version of a memory, live or deleted, oldest first (from the oldest kept if history_versions "
            "bounds it): content, when, by whom."
        ),
        args=HistoryArgs,
        result=HistoryOut,
        handler=_history,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="core_memory_read",
        title="Read core memory",
        description="The core memory paragraph, its version and size.",
        args=NoArgs,
        result=CoreOut,
        handler=_core,
        read_only=True,
        idempotent=True,
    ),
)

TOOLS_BY_NAME: dict[str, ToolSpec[Any, Any]] = {tool.name: tool for tool in TOOLS}

# Served only when a curator policy is on (`mcp-memalpha serve --policy ...`).
CURATION_TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        name="memorize",
        title="Memorize a chunk",
        description=(
            "Hand a chunk of conversation to the curator, a local model that decides what to keep and writes it "
            "with the memory tools. Returns at once a job_id and its place in the queue (jobs run one at a time). "
            "Refused for an empty chunk or when policy_max_queue jobs (100 by default) are unfinished."
        ),
        args=MemorizeArgs,
        result=MemorizeOut,
        handler=_memorize,
    ),
    ToolSpec(
        name="memorize_status",
        title="Status of a memorize job",
        description=(
            "A memorize job's state (queued, running, done, failed: its writes reverted, or undone), place in "
            "the queue, attempts, the curator's tool calls with their results, and any error. wait_seconds "
            "waits for the end, reporting progress."
        ),
        args=MemorizeStatusArgs,
        result=MemorizeStatusOut,
        handler=_memorize_status,
        with_progress=_memorize_status,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="memorize_undo",
        title="Undo a memorize job",
        description=(
            "Revert what a done or failed memorize job wrote, each memory (and core) as a new version. A done "
            "job: all or nothing, refused, naming them, if another writer changed one since. A failed job: "
            "reverts the writes it kept (memorize_status lists them) that can be reverted now and lists the rest "
            "with why. Possible for undo_days (7 by default) after the job finished."
        ),
        args=MemorizeUndoArgs,
        result=MemorizeUndoOut,
        handler=_memorize_undo,
        destructive=True,
    ),
    ToolSpec(
        name="memorize_retry",
        title="Retry a failed memorize job",
        description=(
            "Queue a failed memorize job again. Refused, naming them, if its failure left memories in place that "
            "another writer had changed (a rerun would apply the chunk twice)."
        ),
        args=MemorizeRetryArgs,
        result=MemorizeOut,
        handler=_memorize_retry,
    ),
)
MEMALPHA_TOOLS: tuple[str, ...] = tuple(tool.name for tool in TOOLS if tool.memalpha)


def execute(memory: Memory, ctx: CallContext, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run one tool call by name (the entry point for the curator and training rollouts).

    Returns the result as plain JSON data; raises InvalidArgument for an unknown tool or bad
    arguments and the other MemalphaError subclasses for refused operations.
    """
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        raise InvalidArgument("name", f"unknown tool {name!r}; the tools are {', '.join(TOOLS_BY_NAME)}")
    return tool.call(memory, ctx, arguments).model_dump(mode="json")


def render_memory(core: CoreRow, items: list[ItemRow]) -> str:
    """Memory as text for a prompt: core paragraph, then items with ids and times."""
    lines = ["## Core memory", core.content or "(empty)"]
    for kind in ("semantic", "episodic"):
        lines.append(f"\n## {kind.capitalize()} memory")
        chosen = [item for item in items if item.memory_type == kind]
        lines += [f"- ({item.id}) {render_hit(item)}" for item in chosen] or ["(none)"]
    return "\n".join(lines)
