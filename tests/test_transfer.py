"""Export and import: every field survives, bad files change nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mcp_memalpha import CallContext, InvalidArgument, Memory, Settings
from mcp_memalpha.errors import StorageError
from mcp_memalpha.tools import execute
from mcp_memalpha.transfer import MAX_VERSION, export_jsonl, import_jsonl
from tests.conftest import BOTH_BACKENDS


def fill(memory: Memory) -> None:
    ctx, work = CallContext(), CallContext(namespace="work", source="policy", job_id="j1")
    memory.set_core(ctx, "Lee is a pianist.")
    kept = memory.insert(ctx, "episodic", "Lee played a concert in Oslo", "7:30 pm on 2 June, 2023")
    memory.update(ctx, "episodic", kept.id, "Lee played two concerts in Oslo", "2023-06-02T19:30:00+02:00")
    gone = memory.insert(ctx, "semantic", "Lee's piano is a Steinway")
    memory.delete(ctx, "semantic", gone.id)
    memory.insert(work, "semantic", "Deadline: the album ships in May — “final” mix ✓")


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()[1:]]


@BOTH_BACKENDS
def test_round_trip_keeps_every_field(tmp_path: Path, database: dict[str, str], other_database: dict[str, str]) -> None:
    with Memory(Settings(data_dir=tmp_path / "a", **database)) as source:
        fill(source)
        first = io.StringIO()
        count = export_jsonl(source, first, include_deleted=True)
    assert count == 4
    with Memory(Settings(data_dir=tmp_path / "b", **other_database)) as target:
        report = import_jsonl(target, io.StringIO(first.getvalue()))
        assert report.items_added == 3 and report.cores_written == 1
        second = io.StringIO()
        export_jsonl(target, second, include_deleted=True)
        assert records(second.getvalue()) == records(first.getvalue())
        # imported items are searchable, deleted ones are not
        hits = target.search(CallContext(), "concerts in Oslo").hits
        assert [h.item.content for h in hits] == ["Lee played two concerts in Oslo"]
        assert hits[0].item.event_time == "2023-06-02T17:30:00Z" and hits[0].item.version == 2
        # importing the same file again changes nothing
        again = import_jsonl(target, io.StringIO(first.getvalue()))
        assert (again.items_added, again.items_unchanged, again.cores_written) == (0, 3, 0)


@BOTH_BACKENDS
def test_bad_line_imports_nothing(tmp_path: Path, database: dict[str, str], other_database: dict[str, str]) -> None:
    with Memory(Settings(data_dir=tmp_path / "a", **database)) as source:
        fill(source)
        buffer = io.StringIO()
        export_jsonl(source, buffer)
    lines = buffer.getvalue().splitlines()
    broken = json.loads(lines[-1])
    broken["memory_type"] = "dream"
    bad = "\n".join([*lines[:-1], json.dumps(broken)])
    with Memory(Settings(data_dir=tmp_path / "b", **other_database)) as target:
        with pytest.raises(InvalidArgument, match=f"line {len(lines)}: memory_type"):
            import_jsonl(target, io.StringIO(bad))
        with pytest.raises(InvalidArgument, match=r"line 2: .*not JSON"):
            import_jsonl(target, io.StringIO(lines[0] + "\n{oops\n"))
        with pytest.raises(InvalidArgument, match="line 1"):
            import_jsonl(target, io.StringIO('{"record": "item"}\n'))
        assert list(target.iter_items(None, include_deleted=True)) == []
        assert target.cores(None) == []


@BOTH_BACKENDS
def test_conflicting_ids(tmp_path: Path, database: dict[str, str], other_database: dict[str, str]) -> None:
    with Memory(Settings(data_dir=tmp_path / "a", **database)) as source:
        fill(source)
        buffer = io.StringIO()
        export_jsonl(source, buffer)
    changed = buffer.getvalue().replace("two concerts", "three concerts")
    with Memory(Settings(data_dir=tmp_path / "b", **other_database)) as target:
        import_jsonl(target, io.StringIO(buffer.getvalue()))
        with pytest.raises(InvalidArgument, match="already exists"):
            import_jsonl(target, io.StringIO(changed))
        assert import_jsonl(target, io.StringIO(changed), on_conflict="skip").items_skipped == 1
        assert import_jsonl(target, io.StringIO(changed), on_conflict="replace").items_replaced == 1
        assert any("three concerts" in item.content for item in target.iter_items(None))


def _export(tmp_path: Path, database: dict[str, str]) -> list[dict]:
    with Memory(Settings(data_dir=tmp_path / "src", **database)) as source:
        fill(source)
        buffer = io.StringIO()
        export_jsonl(source, buffer)
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def _dump(lines: list[dict]) -> io.StringIO:
    return io.StringIO("\n".join(json.dumps(line) for line in lines))


@BOTH_BACKENDS
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"created_at": "not a time"}, "created_at"),
        ({"id": "s-bbbbbb\n"}, "not a memory id"),
        ({"id": "e-bbbbbb"}, "not a semantic id"),
        ({"version": 0}, "version"),
        ({"version": 2**70}, "version"),
        ({"content": "a\u0000b"}, "NUL"),
        ({"event_time": "9999-12-31T23:59:59-01:00"}, "event_time"),
        ({"namespace": "bad ns"}, "namespace"),
        ({"version": "3"}, "version"),
    ],
)
def test_import_refuses_records_that_break_invariants(
    tmp_path: Path, change: dict, message: str, database: dict[str, str], other_database: dict[str, str]
) -> None:
    lines = _export(tmp_path, database)
    item = next(i for i, line in enumerate(lines) if line.get("record") == "item" and line["memory_type"] == "semantic")
    lines[item] = lines[item] | change
    with Memory(Settings(data_dir=tmp_path / "dst", **other_database)) as target:
        with pytest.raises(InvalidArgument, match=f"line {item + 1}") as error:
            import_jsonl(target, _dump(lines))
        assert message in str(error.value)
        assert list(target.iter_items(None, include_deleted=True)) == []


@BOTH_BACKENDS
def test_import_refuses_duplicates_namespace_moves_and_version_regressions(
    tmp_path: Path, database: dict[str, str], other_database: dict[str, str]
) -> None:
    lines = _export(tmp_path, database)
    item = next(i for i, line in enumerate(lines) if line.get("record") == "item")
    with Memory(Settings(data_dir=tmp_path / "dst", **other_database)) as target:
        with pytest.raises(InvalidArgument, match=f"line {len(lines) + 1}: id: repeats the record of line {item + 1}"):
            import_jsonl(target, _dump([*lines, lines[item]]))
        import_jsonl(target, _dump(lines))
        moved = [dict(line) for line in lines]
        moved[item]["namespace"] = "elsewhere"
        with pytest.raises(InvalidArgument, match="never moves memories between namespaces"):
            import_jsonl(target, _dump(moved), on_conflict="replace")
        older = [dict(line) for line in lines]
        older[item] |= {"content": "an older text", "version": 1}
        import_jsonl(target, _dump(older), on_conflict="replace")
        current = target.get(CallContext(namespace=lines[item]["namespace"]), [lines[item]["id"]])[0][0]
        assert current.content == "an older text" and current.version == lines[item]["version"] + 1


@BOTH_BACKENDS
@pytest.mark.parametrize(
    ("created_at", "canonical"),
    [
        ("20230508T135600", "2023-05-08T13:56:00"),
        ("2023-W01-1", "2023-01-02T00:00:00"),
        ("2023-05-08T13:56:00.000000Z", "2023-05-08T13:56:00.000000Z"),  # as the tools write it: kept
    ],
)
def test_import_stores_times_in_the_form_the_tools_write(
    tmp_path: Path, created_at: str, canonical: str, database: dict[str, str], other_database: dict[str, str]
) -> None:
    """ISO forms SQLite cannot read made every memory_list of that type fail, bare."""
    lines = _export(tmp_path, database)
    item = next(i for i, line in enumerate(lines) if line.get("record") == "item" and line["memory_type"] == "semantic")
    lines[item] |= {"created_at": created_at, "updated_at": created_at}
    with Memory(Settings(data_dir=tmp_path / "dst", **other_database)) as target:
        import_jsonl(target, _dump(lines))
        listed = execute(target, CallContext(namespace="work"), "memory_list", {"memory_type": "semantic"})
        assert [entry["memory_id"] for entry in listed["memories"]] == [lines[item]["id"]]
        assert listed["memories"][0]["created_at"] == canonical


@BOTH_BACKENDS
def test_import_refuses_versions_that_later_updates_would_overflow(
    tmp_path: Path, database: dict[str, str], other_database: dict[str, str]
) -> None:
    lines = _export(tmp_path, database)
    item = next(i for i, line in enumerate(lines) if line.get("record") == "item" and line["memory_type"] == "semantic")
    lines[item]["version"] = 2**63 - 1  # was accepted; every later update then failed with an overflow
    with Memory(Settings(data_dir=tmp_path / "dst", **other_database)) as target:
        with pytest.raises(InvalidArgument, match=f"line {item + 1}: version: Input should be less than or equal"):
            import_jsonl(target, _dump(lines))
        lines[item]["version"] = MAX_VERSION
        import_jsonl(target, _dump(lines))
        ctx = CallContext(namespace="work")
        updated = target.update(ctx, "semantic", lines[item]["id"], "The album ships in June")
        assert updated.version == MAX_VERSION + 1


def test_a_row_that_cannot_be_listed_is_an_error_naming_the_memory(tmp_path: Path) -> None:
    """A time SQLite cannot read, already in a ledger (written by an older import): memory_list
    names the memory and what to do, instead of failing with a bare "Error executing tool"."""
    with Memory(Settings(data_dir=tmp_path)) as memory:
        fill(memory)
        ctx = CallContext(namespace="work")
        item = next(memory.iter_items("work"))
        memory.ledger.conn.execute("UPDATE items SET created_at = '2023-W01-1' WHERE id = ?", (item.id,))
        with pytest.raises(StorageError, match=f"memory '{item.id}' .*has created_at '2023-W01-1', which SQLite"):
            execute(memory, ctx, "memory_list", {"memory_type": "semantic"})
