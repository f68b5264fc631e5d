"""The server side of the curator: its tools, its `execute`, and the worker that runs memorize jobs.

The curator itself (`policy`, a llama.cpp model) knows nothing of this package: it is handed
`ToolDef`s and an `execute(name, arguments)` callable. It is imported only when the policy is
switched on (`load_policy`, inside functions), so a server without it never loads `policy`.

The worker claims jobs from the durable queue (`jobs.JobQueue`), one at a time, runs the curator
on each chunk and marks the job done after the last write. Every write is tagged with the job
and fenced by its lease, so a job is applied exactly once even when workers die (see jobs.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mcp_memalpha import tools
from mcp_memalpha.errors import MemalphaError
from mcp_memalpha.jobs import Claim, JobQueue
from mcp_memalpha.memory import CallContext, Memory
from mcp_memalpha.settings import Settings
from mcp_memalpha.store.ledger import Tx

if TYPE_CHECKING:
    from mcp_memalpha.policy.calls import CallOutcome, CallRecord, CurationResult, Execute, ToolDef
    from mcp_memalpha.policy.memalpha import PromptTexts

log = logging.getLogger(__name__)

# What the curator is shown: the four Mem-α tools, under the names it was trained on. It may also
# read the memory to build its prompt (reads, never shown to the model as tools): the core, the most
# recent items (the memalpha view) and whole items (its duplicate check).
CURATOR_TOOL_NAMES: tuple[str, ...] = tools.MEMALPHA_TOOLS
CURATOR_CALLABLE: tuple[str, ...] = (*CURATOR_TOOL_NAMES, "core_memory_read", "memory_list", "memory_get")


class Curator(Protocol):
    """What the worker needs of `mcp_memalpha.policy.curator.Curator` (tests pass scripted fakes)."""

    def curate(
        self,
        chunk: str,
        *,
        timestamp: str | None,
        execute: Execute,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> CurationResult: ...


def curator_tools(names: Sequence[str] = CURATOR_TOOL_NAMES) -> list[ToolDef]:
    """The tools as the curator is told about them, from their one definition in tools.py."""
    from mcp_memalpha.policy.calls import ToolDef

    specs = [tools.TOOLS_BY_NAME[name] for name in names]
    return [ToolDef(name=spec.name, description=spec.description, parameters=spec.input_schema()) for spec in specs]


def read_policy_prompt(path: Path) -> PromptTexts:
    """The memalpha format's texts from `--policy-prompt`'s JSON file; ValueError names the key and why."""
    from mcp_memalpha.policy.memalpha import load_prompt_texts

    return load_prompt_texts(path)


def load_policy(settings: Settings) -> Curator:
    """Load the curator model `settings.policy` names (slow: seconds to minutes; imports llama.cpp),
    with the memalpha format's texts from `settings.policy_prompt` when it is set."""
    from mcp_memalpha.policy.curator import Limits, load_curator

    texts = read_policy_prompt(settings.policy_prompt) if settings.policy_prompt is not None else None

    limits = Limits(
        max_chunk_tokens=settings.policy_max_chunk_tokens,
        max_calls=settings.policy_max_calls,
        max_steps=settings.policy_max_steps,
        max_new_tokens=settings.policy_max_new_tokens,
    )
    curator: Curator = load_curator(
        settings.policy, tools=curator_tools(), wire_format=settings.policy_format, limits=limits, texts=texts
    )
    return curator


def make_execute(
    memory: Memory,
    ctx: CallContext,
    *,
    fence: Callable[[Tx], None] | None = None,
    on_write: Callable[[], None] | None = None,
    allowed: Sequence[str] = CURATOR_CALLABLE,
) -> Execute:
    """The curator's `execute(name, arguments)`: runs the tool as `ctx`, each write checked by
    `fence` in its own transaction. A refused call is an outcome with the error, never an
    exception (the model reads it and may retry); a tool it was not given is refused too.
    The one adapter from the policy to the tools: a training sandbox runs its rollouts through it."""
    from mcp_memalpha.policy.calls import CallOutcome

    def execute(name: str, arguments: dict[str, Any]) -> CallOutcome:
        if name not in allowed:
            return CallOutcome(ok=False, error=f"name: {name!r} is not one of your tools ({', '.join(allowed)})")
        try:
            with memory.ledger.fenced(fence) if fence is not None else nullcontext():
                output = tools.execute(memory, ctx, name, arguments)
        except MemalphaError as exc:
            return CallOutcome(ok=False, error=str(exc))
        if on_write is not None and not tools.TOOLS_BY_NAME[name].read_only:
            on_write()
        return CallOutcome(ok=True, output=output)

    return execute


class CurationWorker:
    """Runs memorize jobs on a background thread: loads the curator, then claims and runs jobs.

    The one job loop: a server's in-process curation and `mcp-memalpha worker` (in a process of
    its own, sharing the ledger's queue with every other one) both run it.

    `load` builds the curator (in the thread, so a server answers `initialize` first);
    `on_write` is called after each write (the server wakes its index); `poll_seconds` is how
    often the queue is checked for jobs queued by other processes or left by dead workers
    (`notify` wakes the worker at once for a job queued in this process, and so does any process's
    new job where the ledger tells of it: `Ledger.watch_jobs`, LISTEN/NOTIFY on PostgreSQL).
    """

    def __init__(
        self,
        memory: Memory,
        load: Callable[[], Curator],
        *,
        on_write: Callable[[], None] | None = None,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.memory = memory
        self.queue = JobQueue(memory.ledger, memory.settings, clock)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.poll_seconds = poll_seconds
        self.curator: Curator | None = None
        self.load_error: str | None = None
        self.loaded = threading.Event()  # set when loading ended, whether it worked or not
        self._load = load
        self._on_write = on_write or (lambda: None)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._current: Claim | None = None
        self._unwatch: Callable[[], None] | None = None
        self._until_idle = False
        self._thread = threading.Thread(target=self._run, name="memalpha-curator", daemon=True)

    def start(self, *, until_idle: bool = False) -> None:
        """Run the loop on the worker's thread; `until_idle` ends it once no job is runnable."""
        self._until_idle = until_idle
        self._unwatch = self.memory.ledger.watch_jobs(self.notify)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the loop to end (`until_idle`, or after `stop`); True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current job; if it is still running after `timeout`, hand it back to the
        queue (its lease goes, so the rest of this attempt's writes are refused and the next claim
        reverts what it wrote)."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        claim = self._current
        if claim is not None and self._thread.is_alive():
            self.queue.release(claim.job.id, claim.owner)
            log.info("memorize job %s handed back unfinished (the server is stopping)", claim.job.id)

    def _run(self) -> None:
        if not self._load_curator():
            return
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # a storage failure: keep serving, try again after a pause
                log.exception("memorize worker: claiming or finishing a job failed")
                ran = False
            if not ran:
                if self._until_idle:
                    return
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _load_curator(self) -> bool:
        started = time.perf_counter()
        try:
            self.curator = self._load()
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the curator policy could not be loaded; memorize is unavailable")
            return False
        finally:
            self.loaded.set()
        log.info("curator policy loaded in %.1f s", time.perf_counter() - started)
        return True

    def run_once(self) -> bool:
        """Claim one job and run it to its end; False when no job was runnable."""
        if self.curator is None:
            raise RuntimeError("the curator is not loaded")
        claim = self.queue.claim(self.name)
        if claim is None:
            return False
        if claim.reverted:
            log.info("memorize job %s: reverted %d writes of an interrupted attempt", claim.job.id, len(claim.reverted))
            self._on_write()
        self._current = claim
        try:
            self._process(self.curator, claim)
        finally:
            self._current = None
        return True

    def _process(self, curator: Curator, claim: Claim) -> None:
        job, owner = claim.job, claim.owner
        ctx = CallContext(namespace=job.namespace, source="policy", job_id=job.id)
        execute = make_execute(self.memory, ctx, fence=self.queue.fence(job.id, owner), on_write=self._on_write)
        records: list[dict[str, Any]] = []

        def on_call(record: CallRecord) -> None:
            records.append(record.to_json())
            self.queue.record(job.id, owner, records)

        with self._heartbeat(job.id, owner):
            try:
                result = curator.curate(job.chunk, timestamp=job.timestamp, execute=execute, on_call=on_call)
            except Exception as exc:
                log.warning("memorize job %s: attempt %d failed", job.id, job.attempts, exc_info=True)
                from mcp_memalpha.policy.curator import ChunkTooLong  # loaded already: the curator is running

                # a chunk too long for the model's own tokenizer stays too long: no point retrying
                retry = not isinstance(exc, ChunkTooLong)
                self.queue.fail(job.id, owner, f"{type(exc).__name__}: {exc}", retry=retry)
                self._on_write()  # a job that failed for good had its writes reverted
                return
        if self.queue.finish(job.id, owner, result.to_json()):
            log.info("memorize job %s done: %d of %d calls executed", job.id, result.executed, len(result.calls))
        else:
            log.warning("memorize job %s: lease lost before it finished; its holder reruns it", job.id)

    @contextmanager
    def _heartbeat(self, job_id: str, owner: str) -> Iterator[None]:
        """Renew the lease every third of its length while the block runs."""
        done = threading.Event()
        interval = self.memory.settings.policy_lease_seconds / 3

        def beat() -> None:
            while not done.wait(interval):
                try:
                    if not self.queue.renew(job_id, owner):
                        log.warning("memorize job %s: lease lost; its remaining writes will be refused", job_id)
                        return
                except Exception:
                    log.exception("memorize job %s: renewing the lease failed; retrying", job_id)

        thread = threading.Thread(target=beat, name="memalpha-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def run_worker(
    settings: Settings,
    *,
    poll_seconds: float = 1.0,
    until_idle: bool = False,
    load: Callable[[], Curator] | None = None,
) -> str | None:
    """`mcp-memalpha worker`: the server's job loop (`CurationWorker`) in a process of its own, on the
    queue of `settings.data_dir`, until interrupted (Ctrl-C, or SIGTERM turned into KeyboardInterrupt
    by the caller) or, with `until_idle`, until no job is runnable. An interrupted job is handed
    back. Returns why the curator could not be loaded, or None."""
    with Memory(settings) as memory:
        worker = CurationWorker(memory, load or partial(load_policy, settings), poll_seconds=poll_seconds)
        worker.start(until_idle=until_idle)
        log.info("memorize worker %s on %s", worker.name, settings.data_dir)
        try:
            while not worker.wait(0.5):
                pass
        except KeyboardInterrupt:
            log.info("memorize worker %s stopping", worker.name)
        finally:
            worker.stop()
        return worker.load_error
