"""The durable queue of memorize jobs, and the revert that makes a job undoable and exactly-once.

A job is one chunk of text for the curator to write into memory. The queue is a table of the
ledger, so every server process on a data directory shares it: a worker claims the next runnable
job (namespaces take turns, each its oldest job first) with a lease, its row locked by the claim
(on PostgreSQL `FOR UPDATE SKIP LOCKED`, so two workers never claim one job and neither waits for
the other; a claim that must revert an earlier attempt also takes the ledger's write lock), renews
the lease while it works and marks the job done after its last write. Every write made for a job
is tagged with the job id (`ops.job_id`), which is what undo and crash recovery revert: a job
claimed again after an interrupted attempt first has that attempt's writes reverted, in
the claim's own transaction, so the chunk's effect lands exactly once.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from mcp_memalpha import ids
from mcp_memalpha.context import CallContext, clean_text, now_iso
from mcp_memalpha.errors import CapacityExceeded, InvalidArgument, JobConflict, LeaseLost, QueueFull
from mcp_memalpha.settings import Settings
from mcp_memalpha.store.ledger import CoreRow, IdTaken, JobRow, Ledger, OpRow, Tx
from mcp_memalpha.timeparse import from_stored, parse_time
from mcp_memalpha.tokens import count_tokens

JobState = Literal["queued", "running", "done", "failed", "undone"]
UNFINISHED = ("queued", "running")
# No text averages 50 characters per WordPiece token: longer than that, refuse without tokenizing it.
MAX_CHARS_PER_TOKEN = 50
WAIT_POLL_S = 0.25

_NOT_UNDOABLE = {
    "queued": "is queued; wait for it to finish (memorize_status with wait_seconds), then undo it",
    "running": "is running; wait for it to finish (memorize_status with wait_seconds), then undo it",
    "undone": "is already undone",
}


@dataclass(frozen=True)
class Job:
    id: str
    namespace: str
    chunk: str
    timestamp: str | None
    state: JobState
    attempts: int
    base_seq: int  # ledger head when the current attempt started; the job's writes come after it
    lease_owner: str | None
    lease_until: float | None  # Unix time; every process on the machine reads the same clock
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None  # CurationResult.to_json(); while running, {"calls": [...so far]}
    error: str | None

    @classmethod
    def of(cls, row: JobRow) -> Job:
        values = asdict(row)
        values["result"] = json.loads(row.result) if row.result else None
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.state not in UNFINISHED

    @property
    def calls(self) -> list[dict[str, Any]]:
        return list((self.result or {}).get("calls", []))


@dataclass(frozen=True)
class Reverted:
    """One memory put back by a revert: deleted (the job created it), restored (the job deleted it)
    or reverted (the job changed it); `version` is the version the revert wrote."""

    memory_type: str
    memory_id: str | None  # None for core memory
    action: Literal["deleted", "restored", "reverted"]
    version: int


@dataclass(frozen=True)
class Kept:
    """A memory a revert left as it is: another writer changed it after the job wrote it, and
    reverting would discard that change. `reason` says who, to which version, and how to undo it
    later (once it is back to what the job wrote, undo reverts it)."""

    memory_type: str
    memory_id: str | None  # None for core memory
    reason: str

    def describe(self) -> str:
        return f"memory '{self.memory_id}'" if self.memory_id else "core memory"


@dataclass(frozen=True)
class Claim:
    job: Job
    owner: str  # this claim's lease token: a later claim of the same job gets another one
    reverted: list[Reverted]  # what an earlier, interrupted attempt had written


class JobQueue:
    """The memorize jobs of one data directory, over the ledger's connection (thread-safe like it).

    `clock` gives the Unix time leases are measured in (tests pass a fake one).
    """

    def __init__(self, ledger: Ledger, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.settings = settings
        self.clock = clock

    # client side -------------------------------------------------------------------------
    def enqueue(self, ctx: CallContext, chunk: str, timestamp: str | None = None) -> tuple[Job, int]:
        """Queue `chunk` for the curator; returns the job and how many unfinished jobs are ahead of it."""
        text = clean_text(chunk, "chunk", "is empty; pass the conversation or text to remember")
        self._check_size(text)
        if timestamp is not None:
            parse_time(timestamp, "timestamp")  # refused now rather than when the job runs
            timestamp = timestamp.strip()
        with self.ledger.write() as tx:
            unfinished = tx.count_unfinished_jobs(ctx.namespace)
            if unfinished >= self.settings.policy_max_queue:
                raise QueueFull(ctx.namespace, self.settings.policy_max_queue)
            job_id = _insert_job(tx, ctx.namespace, text, timestamp)
            return _job(tx, job_id), _position(tx, job_id)

    def _check_size(self, text: str) -> None:
        limit = self.settings.policy_max_chunk_tokens
        hint = "split the text into several chunks and memorize each (limit: policy_max_chunk_tokens)"
        if len(text) > limit * MAX_CHARS_PER_TOKEN:
            raise CapacityExceeded("chunk", len(text), limit * MAX_CHARS_PER_TOKEN, "characters", hint)
        size = count_tokens(text)
        if size > limit:
            raise CapacityExceeded("chunk", size, limit, "tokens", hint)

    def status(self, ctx: CallContext, job_id: str) -> tuple[Job, int | None]:
        """The job and, while it is unfinished, how many unfinished jobs are ahead of it."""
        with self.ledger.read() as tx:
            job = _visible_job(tx, ctx, job_id)
            return job, None if job.finished else _position(tx, job.id)

    def wait(
        self,
        ctx: CallContext,
        job_id: str,
        seconds: float,
        on_change: Callable[[Job, int | None], None] | None = None,
    ) -> tuple[Job, int | None]:
        """Poll the job until it finishes or `seconds` pass, calling `on_change` whenever its state,
        its number of calls or its place in the queue changes. Polls the ledger, because the job
        may be run by a worker in another process."""
        deadline = time.monotonic() + seconds
        seen: tuple[object, ...] | None = None
        while True:
            job, position = self.status(ctx, job_id)
            if on_change is not None and (job.state, len(job.calls), position) != seen:
                seen = (job.state, len(job.calls), position)
                on_change(job, position)
            left = deadline - time.monotonic()
            if job.finished or left <= 0:
                return job, position
            time.sleep(min(WAIT_POLL_S, left))

    def undo(self, ctx: CallContext, job_id: str) -> tuple[list[Reverted], list[Kept]]:
        """Revert what a done or failed job wrote, in one transaction; returns what was reverted and
        what could not be yet.

        A done job is undone as a whole, or refused as a whole (JobConflict) when another writer
        changed one of its memories since. A failed job's other writes were reverted when it
        failed; what it kept (changed by another writer since) is reverted now where it can be (the
        change was put back, or the memory is already as the revert would leave it). The job is
        undone when nothing is left, else it stays failed with the rest listed and their reasons;
        refused (JobConflict) when none of them can be reverted yet.
        """
        with self.ledger.write() as tx:
            job = _visible_job(tx, ctx, job_id)
            if job.state not in ("done", "failed"):
                raise InvalidArgument("job_id", f"job '{job.id}' {_NOT_UNDOABLE[job.state]}")
            job_ctx = CallContext(job.namespace, ctx.source, job.id)
            kept: list[Kept] = []
            if job.state == "done":
                reverted = revert_job(tx, job_ctx, job.base_seq)
            else:
                reverted, kept = revert_unchanged(tx, job_ctx, job.base_seq)
                if kept and not reverted:
                    raise JobConflict(job.id, [k.describe() for k in kept])
            undo = {"at": now_iso(), "reverted": [asdict(r) for r in reverted]}
            result = {**(job.result or {}), "undo": undo, "kept": [asdict(k) for k in kept]}
            tx.update_job(job.id, {"state": "failed" if kept else "undone", "result": json.dumps(result)})
        return reverted, kept

    def retry(self, ctx: CallContext, job_id: str) -> tuple[Job, int]:
        """Queue a failed job again, with its chunk and a fresh count of attempts.

        Refused when its failure left writes in place (another writer had changed them): running
        the chunk again on top of them would apply it twice."""
        with self.ledger.write() as tx:
            job = _visible_job(tx, ctx, job_id)
            if job.state != "failed":
                raise InvalidArgument("job_id", f"job '{job.id}' is {job.state}; only a failed job can be retried")
            kept = [Kept(**entry).describe() for entry in (job.result or {}).get("kept") or []]
            if kept:
                raise InvalidArgument(
                    "job_id",
                    f"job '{job.id}' left {', '.join(kept)} in place when it failed (another writer had changed "
                    "them); running it again would apply the chunk twice. Undo it first (memorize_undo reverts "
                    "them once they are back to what the job wrote), or fix them by hand (memory_history)",
                )
            tx.update_job(
                job.id, {"state": "queued", "attempts": 0, "base_seq": tx.head(), "finished_at": None, "result": None}
            )
            return _job(tx, job.id), _position(tx, job.id)

    # worker side -------------------------------------------------------------------------
    def claim(self, owner: str) -> Claim | None:
        """Lease the next runnable job (queued, or running with an expired lease) to `owner`.

        A job that ran before has the writes of its earlier attempts reverted first, in this same
        transaction. A job that has used all its attempts is marked failed instead (its writes
        reverted, its chunk kept: `retry` queues it again), and so is one whose earlier writes
        another writer has changed since: those are left in place (reverting them would discard
        that change) and listed, the rest is reverted, and rerunning would apply the chunk twice.
        """
        token = f"{owner}/{secrets.token_hex(4)}"
        now = self.clock()
        with self.ledger.read() as tx:  # idle workers poll: look before taking the write lock
            if self._next_runnable(tx, now) is None:
                return None
        # A job with nothing to revert changes only its own row: claimed without the writers' lock
        # (on PostgreSQL beside other writes, its row locked, other claimers passing over it).
        with self.ledger.write(serialize=False) as tx:
            job = self._next_runnable(tx, now, lock=True)
            if job is None:
                return None
            if self._plain(tx, job):
                return self._lease(tx, job, token, now, [])
        with self.ledger.write() as tx:
            while (job := self._next_runnable(tx, now, lock=True)) is not None:
                if job.attempts >= self.settings.policy_max_attempts:
                    self._give_up(tx, job, f"attempt {job.attempts} was interrupted (the worker stopped or died)")
                    continue
                reverted, kept = revert_unchanged(tx, _policy_context(job), job.base_seq)
                if kept:
                    _set_failed(
                        tx,
                        job,
                        f"an earlier attempt was interrupted, and another writer has changed {_names(kept)} "
                        "since it wrote them: those were left in place and the attempt's other writes were "
                        "reverted. The job was not run again: that would apply the chunk twice.",
                        reverted,
                        kept,
                    )
                    continue
                return self._lease(tx, job, token, now, reverted)
        return None

    def _plain(self, tx: Tx, job: Job) -> bool:
        """Whether claiming `job` writes nothing but its row: it is queued (so no lease holder can
        be writing for it), has attempts left, and no earlier attempt's writes to revert."""
        return (
            job.state == "queued"
            and job.attempts < self.settings.policy_max_attempts
            and not tx.job_ops(job.id, job.base_seq)
        )

    def _lease(self, tx: Tx, job: Job, token: str, now: float, reverted: list[Reverted]) -> Claim:
        """The claim's write: the job runs under `token`'s lease; its writes come after `base_seq`."""
        tx.update_job(
            job.id,
            {
                "state": "running",
                "base_seq": tx.head(),
                "lease_owner": token,
                "lease_until": now + self.settings.policy_lease_seconds,
                "started_at": now_iso(),
                "result": json.dumps({"calls": []}),
            },
            add_attempts=1,
        )
        return Claim(_job(tx, job.id), token, reverted)

    def _next_runnable(self, tx: Tx, now: float, lock: bool = False) -> Job | None:
        """The next job in turn: namespaces take turns (round robin), each its own oldest job first.

        The namespace whose last claim is oldest (never: first) goes next, so one namespace's full
        queue delays another's job by at most one job, not by its whole queue."""
        row = tx.next_runnable_job(now, lock)
        return Job.of(row) if row else None

    def renew(self, job_id: str, owner: str) -> bool:
        """Extend the lease; False if `owner` no longer holds the job."""
        with self.ledger.write() as tx:
            return tx.update_job(job_id, {"lease_until": self.clock() + self.settings.policy_lease_seconds}, owner)

    def record(self, job_id: str, owner: str, calls: list[dict[str, Any]]) -> bool:
        """Save the calls made so far, so status shows progress; False if the lease was lost."""
        with self.ledger.write() as tx:
            return tx.update_job(job_id, {"result": json.dumps({"calls": calls})}, owner)

    def finish(self, job_id: str, owner: str, result: dict[str, Any]) -> bool:
        """Mark the job done (after its last write); False if the lease was lost, in which case
        whoever holds the job now reverts this attempt's writes and runs it again."""
        with self.ledger.write() as tx:
            done = {"state": "done", "result": json.dumps(result), "error": None, "finished_at": now_iso()}
            return tx.update_job(job_id, {**done, "lease_owner": None, "lease_until": None}, owner)

    def fail(self, job_id: str, owner: str, error: str, retry: bool = True) -> JobState | None:
        """An attempt raised: queue the job again, or after policy_max_attempts attempts (or at once
        without `retry`: another attempt would fail the same way) revert its writes and mark it
        failed. Returns the new state (None if the lease was lost)."""
        with self.ledger.write() as tx:
            job = _job(tx, job_id)
            if job.lease_owner != owner or job.state != "running":
                return None
            if not retry or job.attempts >= self.settings.policy_max_attempts:
                self._give_up(tx, job, error)
                return "failed"
            tx.update_job(
                job_id,
                {
                    "state": "queued",
                    "lease_owner": None,
                    "lease_until": None,
                    "error": f"attempt {job.attempts} failed: {error}",
                },
            )
            return "queued"

    def release(self, job_id: str, owner: str) -> bool:
        """Hand a job back unfinished (the server is stopping): queued again, and this attempt is not
        counted; what it wrote is reverted when the job is claimed next."""
        with self.ledger.write() as tx:
            return tx.update_job(
                job_id, {"state": "queued", "lease_owner": None, "lease_until": None}, owner, add_attempts=-1
            )

    def fence(self, job_id: str, owner: str) -> Callable[[Tx], None]:
        """A check for `Ledger.fenced`: a write made for the job commits only while `owner` holds it."""

        def check(tx: Tx) -> None:
            if not tx.holds_lease(job_id, owner):
                raise LeaseLost(job_id)

        return check

    def _give_up(self, tx: Tx, job: Job, error: str) -> None:
        """Mark failed after the last attempt, reverting what the job wrote except what another
        writer changed since (left in place and listed)."""
        tries = f"{job.attempts} attempts (policy_max_attempts)" if job.attempts > 1 else "1 attempt"
        error = f"gave up after {tries}; the last: {error}"
        reverted, kept = revert_unchanged(tx, _policy_context(job), job.base_seq)
        if kept:
            error += f". Its writes were reverted except {_names(kept)}, which another writer changed since"
        else:
            error += ". Its writes were reverted; memorize_retry runs the chunk again"
        _set_failed(tx, job, error, reverted, kept)


# ---- revert ----------------------------------------------------------------------------------


def revert_job(tx: Tx, ctx: CallContext, after: int, what: str = "undo") -> list[Reverted]:
    """Put every memory that job `ctx.job_id` wrote after ledger sequence number `after` back as it
    was before the job's first write to it.

    Each change is a new version logged as 'undo' and attributed to `ctx` (its source, and the job
    id: the revert is part of the job's history, not another writer's change). Refused as a whole,
    before anything is written, when another writer wrote one of those memories after the job
    first did (JobConflict names them).
    """
    first, histories, blocked = _plan(tx, ctx, after)
    if blocked:
        raise JobConflict(_job_id(ctx), [kept.describe() for kept in blocked.values()], what)
    return _apply(tx, ctx, first, histories)


def revert_unchanged(tx: Tx, ctx: CallContext, after: int) -> tuple[list[Reverted], list[Kept]]:
    """Like `revert_job`, but a memory another writer changed after the job wrote it is left in
    place instead of refusing: returns what was reverted and the memories left, with why."""
    first, histories, blocked = _plan(tx, ctx, after)
    for key in blocked:
        del first[key]
    return _apply(tx, ctx, first, histories), list(blocked.values())


def _job_id(ctx: CallContext) -> str:
    if ctx.job_id is None:
        raise ValueError("reverting a job needs a context with the job id")
    return ctx.job_id


def _plan(tx: Tx, ctx: CallContext, after: int) -> tuple[dict[str, OpRow], dict[str, list[OpRow]], dict[str, Kept]]:
    """The job's first write to each memory, each memory's history, and the memories whose revert
    would discard another writer's change (with why)."""
    job_id = _job_id(ctx)
    first = _first_writes(tx, job_id, after)
    histories = {key: _history(tx, op) for key, op in first.items()}
    blocked = {}
    for key, op in first.items():
        kept = _blocked(op, histories[key], job_id)
        if kept is not None:
            blocked[key] = kept
    return first, histories, blocked


def _blocked(first: OpRow, history: list[OpRow], job_id: str) -> Kept | None:
    """Why reverting this memory would discard another writer's change; None when it would not:
    nobody else wrote it after the job did, or it is again as the job left it (the change was put
    back), or it is already as the revert would leave it."""
    since = [op for op in history if op.seq >= first.seq]
    if all(op.job_id == job_id for op in since):
        return None
    own = [op for op in since if op.job_id == job_id][-1]
    before = [op for op in history if op.seq < first.seq]
    now = history[-1]
    reverted = _state(before[-1]) if before else (None if first.item_id else "", None)
    if _state(now) in (_state(own), reverted):
        return None
    writer = f"job '{now.job_id}'" if now.job_id else f"a {now.source} write"
    reason = (
        f"{writer} made it version {now.version} at {now.at}, after this job wrote version {own.version}; "
        f"memorize_undo reverts it once it is back to this job's version (memory_history shows both)"
    )
    return Kept(first.memory_type, first.item_id, reason)


def _state(op: OpRow) -> tuple[str | None, str | None]:
    """What a memory is after `op`: its content and time (a deleted item: None, with no time)."""
    if op.item_id is None:
        return op.content or "", None
    return (op.content, op.event_time) if op.content is not None else (None, None)


def _names(kept: list[Kept]) -> str:
    return ", ".join(k.describe() for k in kept)


def _apply(tx: Tx, ctx: CallContext, first: dict[str, OpRow], histories: dict[str, list[OpRow]]) -> list[Reverted]:
    now = now_iso()
    reverted = []
    for key, op in first.items():
        before = [earlier for earlier in histories[key] if earlier.seq < op.seq]
        if op.item_id is None:
            done = _revert_core(tx, ctx, op.namespace, before, now)
        else:
            done = _revert_item(tx, ctx, op.item_id, before, now)
        if done is not None:
            reverted.append(done)
    return reverted


def revert_reads(tx: Tx, job_id: str, after: int) -> set[int]:
    """Sequence numbers of the operations `revert_job(..., after)` reads for this job: on each memory
    it wrote, the two operations before its first write (the state to go back to, and the content
    a deletion hides) and every operation since. Compaction keeps them."""
    needed: set[int] = set()
    for op in _first_writes(tx, job_id, after).values():
        seqs = [earlier.seq for earlier in _history(tx, op)]
        start = max(0, sum(seq < op.seq for seq in seqs) - 2)
        needed.update(seqs[start:])
    return needed


def _first_writes(tx: Tx, job_id: str, after: int) -> dict[str, OpRow]:
    """The job's first operation on each memory (and core) it wrote after sequence number `after`."""
    first: dict[str, OpRow] = {}
    for op in tx.job_ops(job_id, after):
        first.setdefault(_entity(op), op)
    return first


def _entity(op: OpRow) -> str:
    return op.item_id or f"core:{op.namespace}"


def _history(tx: Tx, op: OpRow) -> list[OpRow]:
    return tx.history(op.item_id) if op.item_id else tx.core_history(op.namespace)


def _revert_item(tx: Tx, ctx: CallContext, item_id: str, before: list[OpRow], now: str) -> Reverted | None:
    current = tx.item(item_id)
    if current is None:  # only an import with another ledger's job tag could log ops without an item
        return None
    if before:
        last = before[-1]
        # a deletion logs no content: a deleted memory keeps the content it had last
        content = next((op.content for op in reversed(before) if op.content is not None), current.content)
        event_time, deleted_at = last.event_time, (last.at if last.content is None else None)
    else:  # the job created it: it goes, as a tombstone, since ids are never reused
        content, event_time, deleted_at = current.content, current.event_time, current.deleted_at or now
    if (content, event_time, deleted_at is None) == (current.content, current.event_time, current.alive):
        return None
    if event_time == current.event_time:
        event_ts = current.event_ts
    else:
        event_ts = from_stored(event_time).ts if event_time else None
    item = replace(
        current,
        content=content,
        event_time=event_time,
        event_ts=event_ts,
        deleted_at=deleted_at,
        version=current.version + 1,
        updated_at=now,
        source=ctx.source,
        job_id=ctx.job_id,
    )
    tx.save_item(item)
    tx.log("undo", item, now)
    action: Literal["deleted", "restored", "reverted"] = "reverted"
    if current.alive != item.alive:
        action = "restored" if item.alive else "deleted"
    return Reverted(item.memory_type, item.id, action, item.version)


def _revert_core(tx: Tx, ctx: CallContext, namespace: str, before: list[OpRow], now: str) -> Reverted | None:
    content = (before[-1].content or "") if before else ""
    current = tx.core(namespace)
    if current.content == content:
        return None
    core = CoreRow(namespace, content, current.version + 1, now, ctx.source, ctx.job_id)
    tx.save_core(core)
    tx.log("undo", core, now)
    return Reverted("core", None, "reverted", core.version)


# ---- rows ------------------------------------------------------------------------------------


def _policy_context(job: Job) -> CallContext:
    """Whom the writes of a job are attributed to: the curator, in the job's namespace."""
    return CallContext(namespace=job.namespace, source="policy", job_id=job.id)


def _insert_job(tx: Tx, namespace: str, chunk: str, timestamp: str | None) -> str:
    for _ in range(20):
        job_id = ids.new_job_id()
        try:
            tx.insert_job(job_id, namespace, chunk, timestamp, now_iso())
            return job_id
        except IdTaken:  # the id was taken: draw another
            continue
    raise RuntimeError("could not draw an unused job id in 20 tries")


def _job(tx: Tx, job_id: str) -> Job:
    row = tx.job(job_id)
    if row is None:
        raise KeyError(job_id)
    return Job.of(row)


def _visible_job(tx: Tx, ctx: CallContext, raw_id: str) -> Job:
    """The job `raw_id` names in the caller's namespace, or InvalidArgument naming job_id."""
    job_id = ids.normalize_id(str(raw_id))
    if not ids.is_valid_job_id(job_id):
        raise InvalidArgument("job_id", f"{raw_id!r} is not a job id (job ids look like 'j-7kq2mx3pd9')")
    row = tx.job(job_id, ctx.namespace)
    if row is None:
        raise InvalidArgument("job_id", f"no memorize job '{job_id}' in namespace '{ctx.namespace}'")
    return Job.of(row)


def _position(tx: Tx, job_id: str) -> int:
    """Unfinished jobs ahead of this one, in every namespace: the jobs being run, then those the
    namespaces' turns (`JobQueue._next_runnable`) give out before it if nobody queues more."""
    namespace, seq, state = tx.job_place(job_id)
    running = tx.count_running_jobs(other_than=job_id)
    if state == "running":
        return int(running)
    turn = tx.count_queued_jobs(namespace, seq)  # this job is its namespace's turn-th queued job
    rotation = tx.queued_rotation()  # namespaces with queued jobs, in the order their turns come
    ahead, before = running + turn - 1, True
    for other, queued in rotation:
        if other == namespace:
            before = False
            continue
        ahead += min(queued, turn if before else turn - 1)
    return int(ahead)


def _set_failed(tx: Tx, job: Job, error: str, reverted: list[Reverted], kept: list[Kept]) -> None:
    """A terminal state with the chunk kept; `result` keeps the last attempt's calls, what the
    failure reverted and what it left in place, with why (what undo and retry then work on)."""
    result = {**(job.result or {}), "reverted": [asdict(r) for r in reverted], "kept": [asdict(k) for k in kept]}
    failed = {"state": "failed", "error": error, "result": json.dumps(result), "finished_at": now_iso()}
    tx.update_job(job.id, {**failed, "lease_owner": None, "lease_until": None})
