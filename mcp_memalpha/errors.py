"""Typed errors of the memory service. Each message says what was wrong and how to fix it,
because the reader is often a language model that will retry."""

from __future__ import annotations

# How much of an argument a refusal may echo: a 1 MB id must not come back whole. The head names the
# field and starts the value; the tail keeps the hint (what to send instead), which comes last.
MAX_ECHO_CHARS = 600
_HEAD_CHARS = 300


def bounded(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text`, or its head and tail around a note of how much was cut when it is over `limit`."""
    if len(text) <= limit:
        return text
    tail = limit - _HEAD_CHARS if limit > _HEAD_CHARS else 0
    head = min(_HEAD_CHARS, limit)
    return (
        f"{text[:head]}... [{len(text) - head - tail:,} characters cut] ...{text[len(text) - tail :] if tail else ''}"
    )


class MemalphaError(Exception):
    """Base class: an anticipated failure whose message is safe to show to the caller."""


class InvalidArgument(MemalphaError):
    """An argument was rejected; `field` names it. Both are cut to a bounded preview, since either
    may quote what the caller sent (an unknown argument's name, a value that is not an id)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = bounded(field, 200)
        self.reason = bounded(reason)
        super().__init__(f"{self.field}: {self.reason}")


class CapacityExceeded(InvalidArgument):
    """Content would not fit; says the size and the limit instead of truncating."""

    def __init__(self, field: str, size: int, limit: int, unit: str, hint: str) -> None:
        self.size = size
        self.limit = limit
        super().__init__(field, f"is {size} {unit}, over the limit of {limit} {unit}; {hint}")


class NotFound(MemalphaError):
    """No live memory has this id in this namespace."""

    def __init__(self, memory_id: str, memory_type: str, namespace: str, detail: str = "") -> None:
        self.memory_id = memory_id
        super().__init__(
            f"memory_id: no {memory_type} memory with id '{memory_id}' in namespace '{namespace}'"
            f"{detail}. Find ids with search_memory or memory_list."
        )


class VersionConflict(MemalphaError):
    """`expected_version` did not match: someone else changed the memory first."""

    def __init__(self, what: str, expected: int, current: int, current_content: str) -> None:
        self.expected = expected
        self.current = current
        self.current_content = current_content
        super().__init__(
            f"expected_version: {what} is at version {current}, not {expected}; it was changed by "
            f"another writer. Its current content is: {current_content!r}. Merge your change into "
            f"it and retry with expected_version={current}."
        )


class StorageError(MemalphaError):
    """The data directory could not be read or written (read-only, disk full, corrupt)."""


class QueueFull(MemalphaError):
    """Too many unfinished memorize jobs in one namespace; `field` names the limit."""

    def __init__(self, namespace: str, limit: int) -> None:
        self.field = "policy_max_queue"
        super().__init__(
            f"chunk: not queued; namespace '{namespace}' already has {limit} unfinished memorize jobs, the limit "
            "(policy_max_queue / MEMALPHA_POLICY_MAX_QUEUE). Wait for some to finish (memorize_status) and retry."
        )


class NamespaceFull(MemalphaError):
    """A write would take a namespace past `max_items_per_namespace` live memories."""

    def __init__(self, field: str, namespace: str, count: int, limit: int) -> None:
        self.field = field
        super().__init__(
            f"{field}: not stored; namespace '{namespace}' would hold {count} memories, over the limit of {limit} "
            "(max_items_per_namespace / MEMALPHA_MAX_ITEMS_PER_NAMESPACE). Delete memories that are no longer "
            "needed (memory_delete; deleted ones do not count) or merge related ones with memory_update."
        )


class JobConflict(MemalphaError):
    """A job's writes cannot be reverted: other writers changed some of them since."""

    def __init__(self, job_id: str, changed: list[str], what: str = "undo") -> None:
        self.job_id = job_id
        self.changed = changed
        it = "it" if len(changed) == 1 else "them"
        super().__init__(
            f"job_id: cannot {what} job '{job_id}': another writer changed {', '.join(changed)} after the job "
            f"wrote {it}, and reverting would discard that change. Nothing was reverted; memory_history shows "
            "every version, to fix them by hand."
        )


class LeaseLost(MemalphaError):
    """A worker no longer holds the job it is running (it was taken over or released)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job: this run of job '{job_id}' no longer holds its lease (another worker took it over, or the "
            "server is stopping); the call was not applied"
        )
