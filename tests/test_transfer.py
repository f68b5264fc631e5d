"""Export and import: every field survives, bad files change nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mcp_memalpha import CallContext, InvalidArgument, Memory, Settings
from mcp_memalpha.transfer import export_jsonl, import_jsonl


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


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    with Memory(Settings(data_dir=tmp_path / "a")) as source:
        fill(source)
        first = io.StringIO()
        count = export_jsonl(source, first, include_deleted=True)
    assert count == 4
    with Memory(Settings(data_dir=tmp_path / "b")) as target:
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


def test_bad_line_imports_nothing(tmp_path: Path) -> None:
    with Memory(Settings(data_dir=tmp_path / "a")) as source:
        fill(source)
        buffer = io.StringIO()
        export_jsonl(source, buffer)
    lines = buffer.getvalue().splitlines()
    broken = json.loads(lines[-1])
    broken["memory_type"] = "dream"
    bad = "\n".join([*lines[:-1], json.dumps(broken)])
    with Memory(Settings(data_dir=tmp_path / "b")) as target:
        with pytest.raises(InvalidArgument, match=f"line {len(lines)}: memory_type"):
            import_jsonl(target, io.StringIO(bad))
        with pytest.raises(InvalidArgument, match=r"line 2: .*not JSON"):
            import_jsonl(target, io.StringIO(lines[0] + "\n{oops\n"))
        with pytest.raises(InvalidArgument, match="line 1"):
            import_jsonl(target, io.StringIO('{"record": "item"}\n'))
        assert list(target.iter_items(None, include_deleted=True)) == []
        assert target.cores(None) == []


def test_conflicting_ids(tmp_path: Path) -> None:
    with Memory(Settings(data_dir=tmp_path / "a")) as source:
        fill(source)
        buffer = io.StringIO()
        export_jsonl(source, buffer)
    changed = buffer.getvalue().replace("two concerts", "three concerts")
    with Memory(Settings(data_dir=tmp_path / "b")) as target:
        import_jsonl(target, io.StringIO(buffer.getvalue()))
        with pytest.raises(InvalidArgument, match="already exists"):
            import_jsonl(target, io.StringIO(changed))
        assert import_jsonl(target, io.StringIO(changed), on_conflict="skip").items_skipped == 1
        assert import_jsonl(target, io.StringIO(changed), on_conflict="replace").items_replaced == 1
        assert any("three concerts" in item.content for item in target.iter_items(None))
