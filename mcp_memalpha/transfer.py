"""Export and import: JSON Lines with every field, so a memory can be backed up or moved.

Format (one JSON object per line):
- line 1, the header: `{"record": "header", "format": "mcp-memalpha", "format_version": 1, ...}`
- `{"record": "core", "namespace", "content", "version", "updated_at", "source", "job_id"}`
- `{"record": "item", "id", "namespace", "memory_type", "content", "event_time", "created_at",
  "updated_at", "version", "source", "job_id", "deleted_at"}`

An import is validated in full before anything is written, then applied in one transaction:
a bad file changes nothing. Re-importing the same file is a no-op.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import astuple, dataclass, replace
from typing import Annotated, Literal, TextIO

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from mcp_memalpha import ids
from mcp_memalpha.context import clean_text, now_iso
from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.memory import Memory, check_core_size
from mcp_memalpha.settings import NAMESPACE_PATTERN
from mcp_memalpha.store.ledger import CoreRow, ItemRow, Tx
from mcp_memalpha.timeparse import from_stored
from mcp_memalpha.validation import validation_problems

OnConflict = Literal["error", "skip", "replace"]


# Versions an import may bring: the largest integer every JSON reader holds exactly (2**53 - 1),
# which leaves later updates (each one more) far below SQLite's 64-bit INTEGER.
MAX_VERSION = 2**53 - 1

# The forms the tools write (memory.now_iso, timeparse.from_datetime): date, time, optional
# microseconds, optional Z.
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z?")
_SQLITE = sqlite3.connect(":memory:", check_same_thread=False)
_SQLITE_LOCK = threading.Lock()


def _timestamp(value: str | None) -> str | None:
    """The canonical form of a time (as the tools write it), which SQLite must be able to read:
    `memory_list` orders by it there. ISO-8601 also has forms SQLite does not read ('20230508T135600',
    '2023-W01-1'); they are rewritten into the canonical one, and a time SQLite still cannot read
    is refused."""
    if value is None:
        return None
    try:
        canonical = from_stored(value).iso
    except InvalidArgument as exc:  # a ValueError lets pydantic name the field
        raise ValueError(exc.reason) from None
    if _CANONICAL.fullmatch(value):
        canonical = value  # as written by the tools ('.000000' included), so a re-import stays a no-op
    with _SQLITE_LOCK:
        (day,) = _SQLITE.execute("SELECT julianday(?)", (canonical,)).fetchone()
    if day is None:
        raise ValueError(f"{value!r} is a time SQLite cannot read, so memory_list could not order it")
    return canonical


Timestamp = Annotated[str, AfterValidator(_timestamp)]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]


def _namespace(value: str) -> str:
    if not NAMESPACE_PATTERN.fullmatch(value):
        raise ValueError("is not a valid namespace")
    return value


Namespace = Annotated[str, AfterValidator(_namespace)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HeaderRecord(_Record):
    record: Literal["header"]
    format: Literal["mcp-memalpha"]
    format_version: Literal[1]
    exported_at: str
    namespace: Namespace | None = None


class CoreRecord(_Record):
    record: Literal["core"]
    namespace: Namespace
    content: str
    version: Annotated[int, Field(ge=0, le=MAX_VERSION)]
    updated_at: Timestamp | None
    source: Literal["client", "policy", "import"] | None
    job_id: str | None = None

    @model_validator(mode="after")
    def _written_core_has_a_time(self) -> CoreRecord:
        if self.version > 0 and (self.updated_at is None or self.source is None):
            raise ValueError("a core memory with a version needs updated_at and source")
        return self


class ItemRecord(_Record):
    record: Literal["item"]
    id: str
    namespace: Namespace
    memory_type: Literal["episodic", "semantic"]
    content: str
    event_time: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    version: Version
    source: Literal["client", "policy", "import"]
    job_id: str | None = None
    deleted_at: Timestamp | None = None

    @model_validator(mode="after")
    def _id_matches_type(self) -> ItemRecord:
        if not ids.is_valid_id(self.id):
            raise ValueError(f"id {self.id!r} is not a memory id")
        if ids.TYPE_OF_PREFIX[self.id[0]] != self.memory_type:
            raise ValueError(f"id {self.id!r} is not a {self.memory_type} id")
        return self


@dataclass
class ImportReport:
    items_added: int = 0
    items_replaced: int = 0
    items_unchanged: int = 0
    items_skipped: int = 0
    cores_written: int = 0


def export_jsonl(memory: Memory, out: TextIO, namespace: str | None = None, include_deleted: bool = False) -> int:
    """Write the header, the core paragraphs and the items; returns the number of records."""
    header = HeaderRecord(
        record="header",
        format="mcp-memalpha",
        format_version=1,
        exported_at=now_iso(),
        namespace=namespace,
    )
    out.write(header.model_dump_json() + "\n")
    count = 0
    for core in memory.cores(namespace):
        out.write(json.dumps({"record": "core", **core.__dict__}, ensure_ascii=False) + "\n")
        count += 1
    for item in memory.iter_items(namespace, include_deleted):
        fields = {k: v for k, v in item.__dict__.items() if k != "event_ts"}
        out.write(json.dumps({"record": "item", **fields}, ensure_ascii=False) + "\n")
        count += 1
    return count


def read_records(lines: Iterable[str], memory: Memory) -> tuple[list[CoreRow], list[ItemRow]]:
    """Parse and validate a whole export; raises InvalidArgument naming the line and field."""
    cores: list[CoreRow] = []
    items: list[ItemRow] = []
    first_line: dict[str, int] = {}
    seen_header = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            kind = data.get("record") if isinstance(data, dict) else None
            if number == 1 or not seen_header:
                HeaderRecord.model_validate(data)
                seen_header = True
            elif kind == "core":
                core = _core_row(CoreRecord.model_validate(data), memory)
                _once(first_line, f"core:{core.namespace}", number, "namespace")
                cores.append(core)
            elif kind == "item":
                item = _item_row(ItemRecord.model_validate(data), memory)
                _once(first_line, item.id, number, "id")
                items.append(item)
            else:
                raise InvalidArgument("record", f"{kind!r} is not 'core' or 'item'")
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"line {number}", f"is not JSON ({exc.msg})") from None
        except ValidationError as exc:
            problem = validation_problems(exc)[0]
            raise InvalidArgument(f"line {number}: {problem.field}", problem.message) from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"line {number}: {exc.field}", exc.reason) from None
    if not seen_header:
        raise InvalidArgument("line 1", "the file is empty; expected an mcp-memalpha export")
    return cores, items


def _once(first_line: dict[str, int], key: str, number: int, field: str) -> None:
    if key in first_line:
        raise InvalidArgument(field, f"repeats the record of line {first_line[key]}")
    first_line[key] = number


def _core_row(record: CoreRecord, memory: Memory) -> CoreRow:
    if record.content:
        clean_text(record.content, "content", "is empty")
    check_core_size(record.content, memory.settings.core_capacity_tokens, "content")
    return CoreRow(record.namespace, record.content, record.version, record.updated_at, record.source, record.job_id)


def _item_row(record: ItemRecord, memory: Memory) -> ItemRow:
    clean_text(record.content, "content", "is empty")
    if len(record.content) > memory.settings.max_content_chars:
        raise InvalidArgument(
            "content", f"is over this store's limit of {memory.settings.max_content_chars} characters"
        )
    if record.version < 1:
        raise InvalidArgument("version", "must be at least 1")
    when = from_stored(record.event_time) if record.event_time else None
    return ItemRow(
        id=record.id,
        namespace=record.namespace,
        memory_type=record.memory_type,
        content=record.content,
        event_time=when.iso if when else None,
        event_ts=when.ts if when else None,
        created_at=record.created_at,
        updated_at=record.updated_at,
        version=record.version,
        source=record.source,
        job_id=record.job_id,
        deleted_at=record.deleted_at,
    )


def import_jsonl(memory: Memory, lines: Iterable[str], on_conflict: OnConflict = "error") -> ImportReport:
    """Validate everything, then write it all in one transaction (or nothing)."""
    cores, items = read_records(lines, memory)
    report = ImportReport()
    now = now_iso()
    with memory.ledger.write() as tx:
        existing = tx.items(item.id for item in items)
        for item in items:
            _import_item(tx, item, existing.get(item.id), on_conflict, report, now)
        for namespace in sorted({item.namespace for item in items}):
            memory.check_room(tx, namespace, "namespace", adding=0)
        for core in cores:
            current = tx.core(core.namespace)
            if astuple(current) == astuple(core):
                continue
            if current.version > 0 and current.content and on_conflict == "error":
                raise InvalidArgument(
                    "core",
                    f"namespace '{core.namespace}' already has a different core memory; "
                    "pass on_conflict='replace' or 'skip'",
                )
            if current.version > 0 and current.content and on_conflict == "skip":
                continue
            if current.version > 0:
                core = replace(core, version=max(core.version, current.version + 1))
            tx.save_core(core)
            tx.log("import", core, now)
            report.cores_written += 1
    return report


def _import_item(
    tx: Tx, item: ItemRow, current: ItemRow | None, on_conflict: OnConflict, report: ImportReport, now: str
) -> None:
    if current is not None:
        if current == item:
            report.items_unchanged += 1
            return
        if on_conflict == "error":
            raise InvalidArgument(
                "id",
                f"memory '{item.id}' already exists with different content; pass on_conflict='replace' or 'skip'",
            )
        if current.namespace != item.namespace:
            raise InvalidArgument(
                "namespace",
                f"memory '{item.id}' belongs to namespace '{current.namespace}', "
                f"not '{item.namespace}'; an import never moves memories between namespaces",
            )
        if on_conflict == "skip":
            report.items_skipped += 1
            return
        # Versions only go up, so a client holding an old version still gets a conflict.
        item = replace(item, version=max(item.version, current.version + 1))
        tx.save_item(item)
        report.items_replaced += 1
    else:
        tx.insert_item(item)
        report.items_added += 1
    tx.log("import", item, now)
