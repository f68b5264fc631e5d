"""The memorize job queue: enqueue limits, leases, claims across connections, undo, exactly-once reruns."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_memalpha import CallContext, InvalidArgument, Memory, Settings
from mcp_memalpha.doctor import Report, check_ledger
from mcp_memalpha.errors import CapacityExceeded, JobConflict, LeaseLost, QueueFull
from mcp_memalpha.jobs import Claim, JobQueue
from mcp_memalpha.store import ledger_for
from mcp_memalpha.tools import CURATION_TOOLS, execute
from tests.conftest import BOTH_BACKENDS

pytestmark = BOTH_BACKENDS
LEASE = 30.0


class Clock:
    """Lease time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path, database: dict[str, str]) -> Settings:
    return Settings(
        **database,
        data_dir=tmp_path / "data",
        policy_max_queue=3,
        policy_max_attempts=2,
        policy_max_chunk_tokens=50,
        policy_lease_seconds=LEASE,
    )


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    with Memory(settings) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(memory: Memory, settings: Settings, clock: Clock) -> JobQueue:
    return JobQueue(memory.ledger, settings, clock)


def write(memory: Memory, queue: JobQueue, claim: Claim, name: str, **arguments: Any) -> dict[str, Any]:
    """One tool call made for the claimed job, as the curation worker makes it."""
    ctx = CallContext(namespace=claim.job.namespace, source="policy", job_id=claim.job.id)
    with memory.ledger.fenced(queue.fence(claim.job.id, claim.owner)):
        return execute(memory, ctx, name, arguments)


def snapshot(memory: Memory, ctx: CallContext) -> dict[str, Any]:
    """What a client reads: both lists in full, the same items by id, and core."""
    listed = {}
    for kind in ("episodic", "semantic"):
        page = memory.list_items(ctx, kind, limit=100)
        listed[kind] = [(i.id, i.content, i.event_time) for i in page.items]
    every = [item_id for rows in listed.values() for item_id, _, _ in rows]
    fetched, missing = memory.get(ctx, every)
    return {
        "listed": listed,
        "fetched": [(i.id, i.content) for i in fetched],
        "missing": missing,
        "core": memory.core(ctx).content,
    }


def deleted_ids(memory: Memory, ctx: CallContext) -> set[str]:
    return {
        i.id for kind in ("episodic", "semantic") for i in memory.list_items(ctx, kind, limit=100, deleted=True).items
    }


def client_memory(memory: Memory, ctx: CallContext) -> dict[str, str]:
    """Some memories a client wrote before any job ran."""
    memory.set_core(ctx, "Ana is a chef in Porto.")
    keep = memory.insert(ctx, "semantic", "Ana's restaurant serves seafood.")
    change = memory.insert(ctx, "episodic", "Ana opened her restaurant.", "2024-01-03")
    drop = memory.insert(ctx, "semantic", "Ana dislikes olives.")
    return {"keep": keep.id, "change": change.id, "drop": drop.id}


def run_job_script(memory: Memory, queue: JobQueue, claim: Claim, ids: dict[str, str]) -> dict[str, str]:
    """What a curator might do with one chunk: insert, update, delete, rewrite core, edit its own insert."""
    made = write(memory, queue, claim, "new_memory_insert", memory_type="semantic_memory", content="Ana has a cat.")
    write(
        memory,
        queue,
        claim,
        "memory_update",
        memory_type="semantic",
        memory_id=made["memory_id"],
        new_content="Ana has a cat named Tuna.",
    )
    write(
        memory,
        queue,
        claim,
        "memory_update",
        memory_type="episodic",
        memory_id=ids["change"],
        new_content="Ana opened her second restaurant.",
        timestamp="2024-02-10",
    )
    write(memory, queue, claim, "memory_delete", memory_type="semantic", memory_id=ids["drop"])
    write(memory, queue, claim, "memory_update", memory_type="core", new_content="Ana is a chef with two restaurants.")
    event = write(memory, queue, claim, "new_memory_insert", memory_type="episodic", content="Ana adopted a cat.")
    return {"cat": made["memory_id"], "adopted": event["memory_id"]}


# ---- enqueue ---------------------------------------------------------------------------------


def test_enqueue_reports_the_queue_position_and_status(queue: JobQueue, ctx: CallContext) -> None:
    first, first_position = queue.enqueue(ctx, "User: I moved to Lisbon.", "2024-03-01")
    second, second_position = queue.enqueue(CallContext(namespace="work"), "User: new manager.")
    assert first.id.startswith("j-") and first.state == "queued" and first.attempts == 0
    assert (first_position, second_position) == (0, 1)  # workers take jobs in order, across namespaces
    job, position = queue.status(ctx, f"  {first.id.upper()} ")  # copied ids are forgiven
    assert (job.id, job.chunk, job.timestamp, position) == (first.id, "User: I moved to Lisbon.", "2024-03-01", 0)
    with pytest.raises(InvalidArgument, match="no memorize job") as error:
        queue.status(ctx, second.id)  # another namespace's job is not visible
    assert error.value.field == "job_id"


@pytest.mark.parametrize(
    ("chunk", "timestamp", "field", "reason"),
    [
        ("   ", None, "chunk", "is empty"),
        ("word " * 60, None, "chunk", "is 60 tokens, over the limit of 50 tokens"),
        ("x" * 10_000, None, "chunk", "characters"),
        ("a\x00b", None, "chunk", "NUL"),
        ("fine", "sometime soon", "timestamp", "sometime soon"),
    ],
)
def test_enqueue_refuses_bad_chunks(
    queue: JobQueue, ctx: CallContext, chunk: str, timestamp: str | None, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        queue.enqueue(ctx, chunk, timestamp)
    assert error.value.field == field and reason in str(error.value)
    if "tokens" in reason:
        assert isinstance(error.value, CapacityExceeded)


def test_a_full_queue_refuses_more_for_that_namespace_only(queue: JobQueue, ctx: CallContext) -> None:
    for i in range(3):
        queue.enqueue(ctx, f"chunk {i}")
    with pytest.raises(QueueFull, match="policy_max_queue") as error:
        queue.enqueue(ctx, "one too many")
    assert "namespace 'default'" in str(error.value) and "3 unfinished" in str(error.value)
    queue.enqueue(CallContext(namespace="other"), "another namespace has its own limit")
    claim = queue.claim("w")
    assert claim is not None and queue.finish(claim.job.id, claim.owner, {"calls": []})
    queue.enqueue(ctx, "room again once one finished")


# ---- claims and leases ---------------------------------------------------------------------


def test_claims_take_the_oldest_job_and_leases_expire(queue: JobQueue, ctx: CallContext, clock: Clock) -> None:
    first, _ = queue.enqueue(ctx, "first")
    second, _ = queue.enqueue(ctx, "second")
    a = queue.claim("worker-a")
    assert a is not None and a.job.id == first.id and a.job.state == "running" and a.job.attempts == 1
    b = queue.claim("worker-b")
    assert b is not None and b.job.id == second.id
    assert queue.claim("worker-c") is None  # both leased

    clock.now += LEASE / 2
    assert queue.renew(a.job.id, a.owner)  # a heartbeat keeps the lease
    clock.now += LEASE * 0.75
    assert queue.claim("worker-c") is not None  # b's lease ran out: taken over (it is the only one expired)
    assert queue.claim("worker-d") is None
    assert not queue.renew(b.job.id, b.owner) and not queue.finish(b.job.id, b.owner, {})
    assert not queue.record(b.job.id, b.owner, [{"name": "x"}])
    job, _ = queue.status(ctx, second.id)
    assert job.state == "running" and job.attempts == 2 and job.lease_owner != b.owner


def test_a_worker_that_lost_its_lease_cannot_write(
    memory: Memory, queue: JobQueue, ctx: CallContext, clock: Clock
) -> None:
    queue.enqueue(ctx, "chunk")
    old = queue.claim("slow-worker")
    assert old is not None
    clock.now += LEASE + 1
    new = queue.claim("other-worker")
    assert new is not None and new.job.id == old.job.id
    with pytest.raises(LeaseLost, match=old.job.id):
        write(memory, queue, old, "new_memory_insert", memory_type="semantic", content="a late write")
    assert list(memory.iter_items(None)) == []
    write(memory, queue, new, "new_memory_insert", memory_type="semantic", content="the holder writes")
    assert [i.content for i in memory.iter_items(None)] == ["the holder writes"]


def test_two_connections_never_claim_the_same_job(settings: Settings, queue: JobQueue, ctx: CallContext) -> None:
    """Two ledgers (two connections, as two server processes have) claim at once."""
    jobs = {queue.enqueue(CallContext(namespace=f"n{i}"), f"chunk {i}")[0].id for i in range(40)}
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def claim_all(name: str) -> None:
        ledger = ledger_for(settings).open()
        try:
            mine = JobQueue(ledger, settings)
            start.wait()
            while (claim := mine.claim(name)) is not None:
                claimed[name].append(claim.job.id)
        finally:
            ledger.close()

    threads = [threading.Thread(target=claim_all, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed["a"] + claimed["b"]) == sorted(jobs)
    assert not set(claimed["a"]) & set(claimed["b"])


def test_a_failing_job_is_retried_then_failed_with_its_writes_reverted(
    memory: Memory, queue: JobQueue, ctx: CallContext
) -> None:
    job, _ = queue.enqueue(ctx, "chunk")
    for attempt in (1, 2):
        claim = queue.claim("w")
        assert claim is not None and claim.job.attempts == attempt
        write(memory, queue, claim, "new_memory_insert", memory_type="semantic", content=f"attempt {attempt}")
        state = queue.fail(job.id, claim.owner, "RuntimeError: the model crashed")
        assert state == ("queued" if attempt == 1 else "failed")
    failed, position = queue.status(ctx, job.id)
    assert failed.state == "failed" and position is None and failed.finished_at
    assert "gave up after 2 attempts" in (failed.error or "") and "the model crashed" in (failed.error or "")
    assert list(memory.iter_items(ctx.namespace)) == []  # each attempt's insert was reverted
    assert queue.claim("w") is None


def test_a_released_job_is_not_charged_an_attempt(memory: Memory, queue: JobQueue, ctx: CallContext) -> None:
    job, _ = queue.enqueue(ctx, "chunk")
    for _ in range(3):  # more releases than policy_max_attempts
        claim = queue.claim("w")
        assert claim is not None and claim.job.attempts == 1
        write(memory, queue, claim, "new_memory_insert", memory_type="semantic", content="half done")
        assert queue.release(job.id, claim.owner)
    claim = queue.claim("w")
    assert claim is not None and [r.action for r in claim.reverted] == ["deleted"]
    assert list(memory.iter_items(ctx.namespace)) == []


# ---- undo ------------------------------------------------------------------------------------


def test_undo_restores_the_memory_exactly(memory: Memory, queue: JobQueue, ctx: CallContext) -> None:
    ids = client_memory(memory, ctx)
    before = snapshot(memory, ctx)
    job, _ = queue.enqueue(ctx, "User: we adopted a cat and I opened a second restaurant.")
    claim = queue.claim("w")
    assert claim is not None
    made = run_job_script(memory, queue, claim, ids)
    assert queue.finish(job.id, claim.owner, {"calls": []})
    assert snapshot(memory, ctx) != before

    reverted, kept = queue.undo(ctx, job.id)
    assert snapshot(memory, ctx) == before and kept == []
    assert deleted_ids(memory, ctx) == {made["cat"], made["adopted"]}  # tombstones: ids are never reused
    actions = {(r.memory_type, r.memory_id): r.action for r in reverted}
    assert actions == {
        ("semantic", made["cat"]): "deleted",
        ("episodic", made["adopted"]): "deleted",
        ("episodic", ids["change"]): "reverted",
        ("semantic", ids["drop"]): "restored",
        ("core", None): "reverted",
    }
    assert memory.get(ctx, [ids["change"]])[0][0].event_time == "2024-01-03T00:00:00"
    # history shows the undo as a new version, with who undid it and for which job
    last = memory.history(ctx, ids["change"])[-1]
    assert (last.op, last.version, last.source, last.job_id) == ("undo", 3, "client", job.id)
    done, _ = queue.status(ctx, job.id)
    assert done.state == "undone" and done.result and len(done.result["undo"]["reverted"]) == 5
    report = Report()
    check_ledger(memory, report)
    assert report.healthy, report.render()  # every item still matches its operation log
    memory.sync_index()
    assert memory.search(ctx, "cat Tuna", method="bm25").hits == []  # and the index follows the undo
    with pytest.raises(InvalidArgument, match="already undone"):
        queue.undo(ctx, job.id)


def test_undo_is_refused_when_another_writer_changed_what_the_job_wrote(
    memory: Memory, queue: JobQueue, ctx: CallContext
) -> None:
    ids = client_memory(memory, ctx)
    job, _ = queue.enqueue(ctx, "chunk")
    claim = queue.claim("w")
    assert claim is not None
    made = run_job_script(memory, queue, claim, ids)
    queue.finish(job.id, claim.owner, {"calls": []})
    memory.update(ctx, "semantic", made["cat"], "Ana's cat Tuna is grey.")
    memory.update(ctx, "episodic", ids["change"], "Ana opened a second restaurant in Braga.")
    memory.restore(ctx, "semantic", ids["drop"])  # back as the undo would leave it: no conflict
    after_job = snapshot(memory, ctx)

    with pytest.raises(JobConflict) as error:
        queue.undo(ctx, job.id)
    message = str(error.value)
    assert message.startswith(f"job_id: cannot undo job '{job.id}'")
    assert made["cat"] in message and ids["change"] in message and ids["drop"] not in message
    assert error.value.changed == [f"memory '{made['cat']}'", f"memory '{ids['change']}'"]
    assert snapshot(memory, ctx) == after_job  # nothing was half-undone
    assert queue.status(ctx, job.id)[0].state == "done"
    # once the client's change is put back (to what the job wrote), the undo goes through
    memory.update(ctx, "semantic", made["cat"], "Ana has a cat named Tuna.")
    memory.update(ctx, "episodic", ids["change"], "Ana opened her second restaurant.")
    reverted, kept = queue.undo(ctx, job.id)
    assert kept == [] and queue.status(ctx, job.id)[0].state == "undone"
    assert {r.memory_id for r in reverted} == {made["cat"], made["adopted"], ids["change"], None}


def test_undo_refuses_unknown_and_unfinished_jobs(queue: JobQueue, ctx: CallContext) -> None:
    job, _ = queue.enqueue(ctx, "chunk")
    cases = [
        (job.id, "is queued; wait for it to finish"),
        ("j-0000000000", "no memorize job 'j-0000000000' in namespace 'default'"),
        ("e-7kq2mx", "is not a job id"),
    ]
    for job_id, reason in cases:
        with pytest.raises(InvalidArgument) as error:
            queue.undo(ctx, job_id)
        assert error.value.field == "job_id" and reason in str(error.value)
    queue.claim("w")
    with pytest.raises(InvalidArgument, match="is running"):
        queue.undo(ctx, job.id)
    with pytest.raises(InvalidArgument, match="no memorize job"):
        queue.undo(CallContext(namespace="elsewhere"), job.id)


# ---- exactly once ----------------------------------------------------------------------------


@pytest.mark.parametrize("crash_after_all_writes", [False, True])
def test_an_interrupted_attempt_is_reverted_then_rerun_exactly_once(
    memory: Memory, queue: JobQueue, ctx: CallContext, clock: Clock, crash_after_all_writes: bool
) -> None:
    """The worker dies mid-job (or after its last write, before marking done); after the lease
    expires the job is taken over, the dead attempt's writes are reverted, and the rerun applies
    the chunk once."""
    ids = client_memory(memory, ctx)
    before = snapshot(memory, ctx)
    job, _ = queue.enqueue(ctx, "chunk")
    dead = queue.claim("dying-worker")
    assert dead is not None
    if crash_after_all_writes:
        run_job_script(memory, queue, dead, ids)
    else:
        write(memory, queue, dead, "new_memory_insert", memory_type="semantic_memory", content="Ana has a cat.")
        write(memory, queue, dead, "memory_delete", memory_type="semantic", memory_id=ids["drop"])

    clock.now += LEASE + 1  # the lease runs out; a restarted server claims the job
    claim = queue.claim("restarted-worker")
    assert claim is not None and claim.job.id == job.id and claim.job.attempts == 2
    assert claim.reverted and snapshot(memory, ctx) == before  # back to the state before the job
    made = run_job_script(memory, queue, claim, ids)
    assert queue.finish(job.id, claim.owner, {"calls": []})

    contents = sorted(i.content for i in memory.iter_items(ctx.namespace))
    assert contents == sorted(
        [
            "Ana's restaurant serves seafood.",
            "Ana opened her second restaurant.",
            "Ana has a cat named Tuna.",
            "Ana adopted a cat.",
        ]
    )  # each of the job's writes once, nothing of the dead attempt
    assert memory.core(ctx).content == "Ana is a chef with two restaurants."
    # and the job is still undoable as a whole: back to the client's memory
    queue.undo(ctx, job.id)
    assert snapshot(memory, ctx) == before
    assert made["cat"] not in {i.id for i in memory.iter_items(ctx.namespace)}


def test_a_job_interrupted_on_its_last_attempt_fails_and_leaves_nothing(
    memory: Memory, queue: JobQueue, ctx: CallContext, clock: Clock
) -> None:
    job, _ = queue.enqueue(ctx, "chunk")
    for _ in range(2):
        claim = queue.claim("dying-worker")
        assert claim is not None
        write(memory, queue, claim, "new_memory_insert", memory_type="semantic", content="half done")
        clock.now += LEASE + 1
    assert queue.claim("w") is None
    failed, _ = queue.status(ctx, job.id)
    assert failed.state == "failed" and "attempt 2 was interrupted" in (failed.error or "")
    assert list(memory.iter_items(ctx.namespace)) == []


def test_an_interrupted_job_whose_writes_were_changed_reverts_the_rest_and_lists_them(
    memory: Memory, queue: JobQueue, ctx: CallContext, clock: Clock
) -> None:
    """A killed attempt inserted A and B; a client then edited A. At the next claim B is reverted,
    A (the client's now) is left and listed, and the job is failed, not rerun (that would apply the
    chunk twice); undo and retry answer truthfully."""
    job, _ = queue.enqueue(ctx, "chunk")
    dead = queue.claim("dying-worker")
    assert dead is not None
    a = write(memory, queue, dead, "new_memory_insert", memory_type="semantic", content="Ana has a cat.")["memory_id"]
    b = write(memory, queue, dead, "new_memory_insert", memory_type="semantic", content="Ana has a dog.")["memory_id"]
    memory.update(ctx, "semantic", a, "Ana has a cat; a client fixed this.")
    clock.now += LEASE + 1
    assert queue.claim("w") is None
    failed, _ = queue.status(ctx, job.id)
    assert failed.state == "failed" and a in (failed.error or "") and b not in (failed.error or "")
    assert "would apply the chunk twice" in (failed.error or "")
    assert failed.result and [k["memory_id"] for k in failed.result["kept"]] == [a]
    assert [(r["memory_id"], r["action"]) for r in failed.result["reverted"]] == [(b, "deleted")]
    assert [i.content for i in memory.iter_items(ctx.namespace)] == ["Ana has a cat; a client fixed this."]
    with pytest.raises(JobConflict, match=a):  # not "there is nothing to undo": A is still the job's write
        queue.undo(ctx, job.id)
    with pytest.raises(InvalidArgument, match="apply the chunk twice"):
        queue.retry(ctx, job.id)
    assert queue.status(ctx, job.id)[0].state == "failed"


def curation_tool(memory: Memory, ctx: CallContext, name: str, **arguments: Any) -> dict[str, Any]:
    """A memorize tool called as a client calls it (parsed arguments, JSON result)."""
    spec = next(tool for tool in CURATION_TOOLS if tool.name == name)
    return spec.call(memory, ctx, arguments).model_dump(mode="json")


def test_a_failed_jobs_kept_writes_are_listed_and_undone_once_the_change_is_put_back(
    memory: Memory, queue: JobQueue, ctx: CallContext, clock: Clock
) -> None:
    """A killed attempt wrote A, B and C; a client then edited A and C. B is reverted at the next
    claim; A and C are kept, listed by memorize_status with why, and memorize_undo later reverts each
    as soon as reverting no longer discards the client's change, saying which it could not yet."""
    job, _ = queue.enqueue(ctx, "chunk")
    dead = queue.claim("dying-worker")
    assert dead is not None
    made = {
        name: write(memory, queue, dead, "new_memory_insert", memory_type="semantic", content=f"Ana has a {name}.")
        for name in ("cat", "dog", "fish")
    }
    a, b, c = (made[name]["memory_id"] for name in ("cat", "dog", "fish"))
    memory.update(ctx, "semantic", a, "Ana has a grey cat.")
    memory.update(ctx, "semantic", c, "Ana has a goldfish.")
    clock.now += LEASE + 1
    assert queue.claim("w") is None

    status = curation_tool(memory, ctx, "memorize_status", job_id=job.id)
    assert status["state"] == "failed" and [k["memory_id"] for k in status["kept"]] == [a, c]
    reason = status["kept"][0]["reason"]
    assert "a client write made it version 2" in reason and "after this job wrote version 1" in reason
    assert b not in {i.id for i in memory.iter_items(ctx.namespace)}  # B was reverted at the claim

    with pytest.raises(JobConflict, match=f"{a}.*{c}"):  # nothing can be reverted yet: refused, nothing done
        curation_tool(memory, ctx, "memorize_undo", job_id=job.id)
    memory.update(ctx, "semantic", a, "Ana has a cat.")  # the client puts A back: the undo may revert it now
    partial = curation_tool(memory, ctx, "memorize_undo", job_id=job.id)
    assert partial["state"] == "failed" and [(r["memory_id"], r["action"]) for r in partial["reverted"]] == [
        (a, "deleted")
    ]
    assert [k["memory_id"] for k in partial["kept"]] == [c] and "version 2" in partial["kept"][0]["reason"]
    assert [k["memory_id"] for k in curation_tool(memory, ctx, "memorize_status", job_id=job.id)["kept"]] == [c]

    memory.delete(ctx, "semantic", c)  # C is now as the undo would leave it (gone): nothing left to keep
    done = curation_tool(memory, ctx, "memorize_undo", job_id=job.id)
    assert (done["state"], done["reverted"], done["kept"]) == ("undone", [], [])
    assert list(memory.iter_items(ctx.namespace)) == []
    assert curation_tool(memory, ctx, "memorize_status", job_id=job.id)["state"] == "undone"


def test_a_last_attempt_that_fails_reverts_all_but_what_another_writer_changed(
    memory: Memory, queue: JobQueue, ctx: CallContext
) -> None:
    job, _ = queue.enqueue(ctx, "chunk")
    claim = queue.claim("w")
    assert claim is not None
    a = write(memory, queue, claim, "new_memory_insert", memory_type="semantic", content="Ana has a cat.")["memory_id"]
    write(memory, queue, claim, "new_memory_insert", memory_type="semantic", content="Ana has a dog.")
    memory.update(ctx, "semantic", a, "Ana has a grey cat.")
    assert queue.fail(job.id, claim.owner, "RuntimeError: the model crashed", retry=False) == "failed"
    failed, _ = queue.status(ctx, job.id)
    assert [i.content for i in memory.iter_items(ctx.namespace)] == ["Ana has a grey cat."]  # the dog is reverted
    assert f"reverted except memory '{a}'" in (failed.error or "")
    assert failed.result and [k["memory_id"] for k in failed.result["kept"]] == [a]


def test_a_job_given_up_keeps_its_chunk_and_can_be_retried_or_undone(
    memory: Memory, queue: JobQueue, ctx: CallContext, clock: Clock
) -> None:
    """After policy_max_attempts interruptions the chunk is not dropped: the job is failed, visibly,
    with its chunk, and memorize_retry runs it again to completion."""
    job, _ = queue.enqueue(ctx, "User: I adopted a cat.")
    for _ in range(2):
        claim = queue.claim("dying-worker")
        assert claim is not None
        write(memory, queue, claim, "new_memory_insert", memory_type="semantic", content="half done")
        clock.now += LEASE + 1
    assert queue.claim("w") is None
    failed, _ = queue.status(ctx, job.id)
    assert failed.state == "failed" and failed.chunk == "User: I adopted a cat."
    assert "memorize_retry" in (failed.error or "") and list(memory.iter_items(ctx.namespace)) == []
    with pytest.raises(InvalidArgument, match="no memorize job"):
        queue.retry(CallContext(namespace="elsewhere"), job.id)

    again, position = queue.retry(ctx, job.id)
    assert (again.state, again.attempts, position) == ("queued", 0, 0)
    with pytest.raises(InvalidArgument, match="only a failed job can be retried"):
        queue.retry(ctx, job.id)
    claim = queue.claim("w")
    assert claim is not None and claim.job.id == job.id and claim.reverted == []  # reverted when it failed
    write(memory, queue, claim, "new_memory_insert", memory_type="semantic", content="Ana has a cat.")
    assert queue.finish(job.id, claim.owner, {"calls": []})
    assert [i.content for i in memory.iter_items(ctx.namespace)] == ["Ana has a cat."]  # once

    other, _ = queue.enqueue(ctx, "chunk")
    claim = queue.claim("w")
    assert claim is not None
    assert queue.fail(other.id, claim.owner, "boom", retry=False) == "failed"
    assert queue.undo(ctx, other.id) == ([], []) and queue.status(ctx, other.id)[0].state == "undone"


def test_the_doctor_reports_the_queue_and_jobs_that_lost_their_worker(
    memory: Memory, queue: JobQueue, ctx: CallContext
) -> None:
    queue.enqueue(ctx, "User: I like tea.")
    queue.enqueue(ctx, "User: I like coffee.")
    assert queue.claim("w") is not None  # leased on the test's clock, which is long past: the worker is gone
    report = Report()
    check_ledger(memory, report)
    assert "memorize jobs: 1 queued, 1 running" in report.facts
    assert any(fact.startswith("1 running memorize job(s) lost their worker") for fact in report.facts)
    assert report.healthy  # a stuck job is not damage: a server with a policy takes it over


# ---- fairness across namespaces ----------------------------------------------------------


def test_one_namespaces_flood_does_not_put_anothers_job_behind_it(settings: Settings, memory: Memory) -> None:
    """100 queued jobs of one tenant: another tenant's job is next after the one being run, not 101st."""
    queue = JobQueue(memory.ledger, settings.model_copy(update={"policy_max_queue": 100}))
    flood = CallContext(namespace="flood")
    flooded = [queue.enqueue(flood, f"chunk {i}")[0].id for i in range(100)]
    running = queue.claim("w")
    assert running is not None and running.job.id == flooded[0]
    other, position = queue.enqueue(CallContext(namespace="quiet"), "User: one small thing.")
    assert position == 1  # only the job being run is ahead of it
    assert queue.status(CallContext(namespace="flood"), flooded[1])[1] == 2  # the flood's next waits its turn
    assert queue.finish(running.job.id, running.owner, {"calls": []})
    claim = queue.claim("w")
    assert claim is not None and claim.job.id == other.id
    # and then turns alternate: each namespace's next job goes before another's later ones
    queue.finish(claim.job.id, claim.owner, {"calls": []})
    later = queue.enqueue(CallContext(namespace="quiet"), "User: another thing.")[0]
    order = []
    for _ in range(3):
        claim = queue.claim("w")
        assert claim is not None
        order.append(claim.job.id)
        queue.finish(claim.job.id, claim.owner, {"calls": []})
    assert order == [flooded[1], later.id, flooded[2]]


def test_a_failed_job_keeps_what_its_undo_reads_through_compaction(
    memory: Memory, queue: JobQueue, ctx: CallContext, clock: Clock
) -> None:
    """A failed job is undoable, so compaction keeps the operations its undo reads: the write it
    left in place is still named after the history was cut, not silently forgotten."""
    job, _ = queue.enqueue(ctx, "chunk")
    dead = queue.claim("dying-worker")
    assert dead is not None
    a = write(memory, queue, dead, "new_memory_insert", memory_type="semantic", content="Ana has a cat.")["memory_id"]
    memory.update(ctx, "semantic", a, "Ana has a cat; a client fixed this.")
    clock.now += LEASE + 1
    assert queue.claim("w") is None and queue.status(ctx, job.id)[0].state == "failed"
    memory.compact(history_versions=1, undo_days=7)
    with pytest.raises(JobConflict, match=a):
        queue.undo(ctx, job.id)
    assert queue.status(ctx, job.id)[0].state == "failed"
