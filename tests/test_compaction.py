"""Compaction of the operation log and the namespace item limit, on real SQLite and LanceDB."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_memalpha import CallContext, InvalidArgument, Memory, Settings
from mcp_memalpha.doctor import Report, check_ledger, diagnose
from mcp_memalpha.errors import NamespaceFull
from mcp_memalpha.jobs import JobQueue
from mcp_memalpha.transfer import export_jsonl, import_jsonl
from tests.conftest import BOTH_BACKENDS, command, server_env
from tests.test_jobs import client_memory, run_job_script, snapshot


@pytest.fixture
def settings(tmp_path: Path, database: dict[str, str]) -> Settings:
    return Settings(data_dir=tmp_path / "data", compact_every=0, **database)


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    with Memory(settings) as opened:
        yield opened


def op_count(memory: Memory) -> int:
    with memory.ledger.read() as tx:
        return int(tx.sql("SELECT COUNT(*) FROM ops").fetchone()[0])


def assert_consistent(memory: Memory) -> None:
    report = Report()
    check_ledger(memory, report)
    assert report.healthy, report.render()


@BOTH_BACKENDS
def test_compaction_keeps_the_newest_versions_and_every_current_state(memory: Memory, ctx: CallContext) -> None:
    item = memory.insert(ctx, "semantic", "Ana has one cat.")
    for n in range(2, 8):
        memory.update(ctx, "semantic", item.id, f"Ana has {n} cats.")
    gone = memory.insert(ctx, "episodic", "Ana moved to Lisbon.", "2024-03-01")
    memory.delete(ctx, "episodic", gone.id)
    for n in range(4):
        memory.set_core(ctx, f"Ana is a chef, year {n}.")
    before = snapshot(memory, ctx)
    assert op_count(memory) == 7 + 2 + 4

    result = memory.compact(history_versions=2)

    assert (result.operations_before, result.operations_removed) == (13, 13 - 6)
    assert [op.content for op in memory.history(ctx, item.id)] == ["Ana has 6 cats.", "Ana has 7 cats."]
    assert [op.version for op in memory.history(ctx, item.id)] == [6, 7]
    assert [op.op for op in memory.history(ctx, gone.id)] == ["insert", "delete"]
    assert snapshot(memory, ctx) == before  # what a client reads does not change
    restored = memory.restore(ctx, "episodic", gone.id)  # a deleted item keeps its content
    assert (restored.content, restored.version) == ("Ana moved to Lisbon.", 3)
    assert_consistent(memory)
    assert "removed 7 of 13 operations" in result.render()


@BOTH_BACKENDS
def test_without_a_version_bound_compaction_keeps_the_whole_log(memory: Memory, ctx: CallContext) -> None:
    item = memory.insert(ctx, "semantic", "Ana has one cat.")
    memory.update(ctx, "semantic", item.id, "Ana has two cats.")
    assert memory.compact().operations_removed == 0
    assert len(memory.history(ctx, item.id)) == 2


@BOTH_BACKENDS
def test_the_index_catches_up_across_a_compaction(memory: Memory, ctx: CallContext) -> None:
    """Operations the index has not applied, and the state before them, survive compaction."""
    first = memory.insert(ctx, "episodic", "Ana adopted a grey cat.", "2024-05-01")
    second = memory.insert(ctx, "episodic", "Ana named the cat Tuna.", "2024-05-01")
    for n in range(3):
        memory.update(ctx, "episodic", first.id, f"Ana adopted a grey cat, note {n}.")
    memory.sync_index()
    with memory.ledger.read() as tx:
        applied = tx.head()
    # changed after the index's last sync: moved to another day, one deleted
    memory.update(ctx, "episodic", first.id, "Ana adopted a striped kitten.", timestamp="2024-06-02")
    memory.delete(ctx, "episodic", second.id)
    memory.insert(ctx, "semantic", "Ana's kitten sleeps on the piano.")

    memory.compact(history_versions=1)

    with memory.ledger.read() as tx:
        assert tx.op_mark(applied) != ""  # the index's mark is kept: no needless full rebuild
        before_changes = tx.states_before([first.id], applied)
    assert before_changes[first.id].content == "Ana adopted a grey cat, note 2."
    assert memory.sync_index() > 0
    found = memory.search(ctx, "kitten cat Tuna", method="bm25", top_k=10).hits
    contents = sorted(hit.item.content for hit in found)
    assert contents == ["Ana adopted a striped kitten.", "Ana's kitten sleeps on the piano."]
    assert diagnose(memory, repair=False).healthy


@BOTH_BACKENDS
def test_an_undoable_job_is_still_undone_exactly_after_compaction(
    memory: Memory, settings: Settings, ctx: CallContext
) -> None:
    ids = client_memory(memory, ctx)
    for n in range(3):  # history the job's revert does not need
        memory.update(ctx, "episodic", ids["change"], f"Ana opened her restaurant ({n}).", "2024-01-03")
    before = snapshot(memory, ctx)
    queue = JobQueue(memory.ledger, settings)
    job, _ = queue.enqueue(ctx, "User: we adopted a cat and I opened a second restaurant.")
    claim = queue.claim("w")
    assert claim is not None
    run_job_script(memory, queue, claim, ids)
    assert queue.finish(job.id, claim.owner, {"calls": []})
    memory.update(ctx, "semantic", ids["keep"], "Ana's restaurant serves seafood and rice.")

    result = memory.compact(history_versions=1, undo_days=7)

    assert result.operations_removed > 0 and result.jobs_removed == 0
    queue.undo(ctx, job.id)
    after = snapshot(memory, ctx)
    keep_listed = [row for row in before["listed"]["semantic"] if row[0] != ids["keep"]]
    assert [row for row in after["listed"]["semantic"] if row[0] != ids["keep"]] == keep_listed
    assert after["listed"]["episodic"] == before["listed"]["episodic"]
    assert after["core"] == before["core"]
    assert_consistent(memory)


@BOTH_BACKENDS
def test_finished_jobs_past_the_undo_horizon_are_deleted(memory: Memory, settings: Settings, ctx: CallContext) -> None:
    queue = JobQueue(memory.ledger, settings)
    done, _ = queue.enqueue(ctx, "User: I like tea.")
    claim = queue.claim("w")
    assert claim is not None and queue.finish(done.id, claim.owner, {"calls": []})
    waiting, _ = queue.enqueue(ctx, "User: I like coffee.")

    assert memory.compact(undo_days=7).jobs_removed == 0
    result = memory.compact(undo_days=0)

    assert result.jobs_removed == 1
    with pytest.raises(InvalidArgument, match="no memorize job"):
        queue.undo(ctx, done.id)
    assert queue.status(ctx, waiting.id)[0].state == "queued"  # unfinished jobs are never touched


@BOTH_BACKENDS
def test_the_log_stays_bounded_with_automatic_compaction(
    tmp_path: Path, ctx: CallContext, database: dict[str, str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", history_versions=3, compact_every=100, **database)
    with Memory(settings) as memory:
        items = [memory.insert(ctx, "semantic", f"Fact number {n}.") for n in range(5)]
        for round_ in range(100):
            for item in items:
                memory.update(ctx, "semantic", item.id, f"Fact {item.id} in round {round_}.")
    # closing waits for the background compactions
    with Memory(settings) as memory:
        # 505 operations were logged; at most 3 per item survive each compaction, plus what came after the last
        assert op_count(memory) <= 3 * len(items) + 100
        history = memory.history(ctx, items[0].id)
        assert history[-1].content == f"Fact {items[0].id} in round 99."
        assert len(history) <= 3 + 100
        assert_consistent(memory)


# ---- the namespace limit ---------------------------------------------------------------------


@BOTH_BACKENDS
def test_a_full_namespace_refuses_inserts_and_restores_but_not_other_namespaces(
    tmp_path: Path, database: dict[str, str]
) -> None:
    ctx, other = CallContext(), CallContext(namespace="work")
    with Memory(Settings(data_dir=tmp_path / "data", max_items_per_namespace=2, **database)) as memory:
        first = memory.insert(ctx, "semantic", "Ana has a cat.")
        memory.insert(ctx, "episodic", "Ana moved.", "2024-01-01")
        with pytest.raises(NamespaceFull, match=r"^content: not stored; namespace 'default' would hold 3 memories"):
            memory.insert(ctx, "semantic", "Ana has a dog.")
        memory.insert(other, "semantic", "The project is due in May.")  # the limit is per namespace
        memory.delete(ctx, "semantic", first.id)  # deleted memories do not count
        memory.insert(ctx, "semantic", "Ana has a dog.")
        with pytest.raises(NamespaceFull, match=r"^memory_id: "):
            memory.restore(ctx, "semantic", first.id)
        assert memory.list_items(ctx, "semantic").total == 1


@BOTH_BACKENDS
def test_an_import_over_the_namespace_limit_writes_nothing(
    tmp_path: Path, ctx: CallContext, database: dict[str, str], other_database: dict[str, str]
) -> None:
    with Memory(Settings(data_dir=tmp_path / "source", **other_database)) as source:
        for n in range(3):
            source.insert(ctx, "semantic", f"Imported fact {n}.")
        out = io.StringIO()
        export_jsonl(source, out)
        lines = out.getvalue().splitlines()
    with Memory(Settings(data_dir=tmp_path / "data", max_items_per_namespace=3, **database)) as memory:
        memory.insert(ctx, "semantic", "Already here.")
        with pytest.raises(NamespaceFull, match=r"^namespace: .* would hold 4 memories, over the limit of 3"):
            import_jsonl(memory, lines)
        assert [i.content for i in memory.list_items(ctx, "semantic").items] == ["Already here."]


def test_the_compact_command_reports_and_vacuums(tmp_path: Path, ctx: CallContext) -> None:
    data = tmp_path / "data"
    with Memory(Settings(data_dir=data)) as memory:
        item = memory.insert(ctx, "semantic", "x" * 2000)
        for n in range(200):
            memory.update(ctx, "semantic", item.id, f"{n} " + "y" * 2000)
    done = subprocess.run(
        [*command(), "compact", "--data-dir", str(data), "--history-versions", "1", "--vacuum"],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "removed 200 of 201 operations" in done.stdout
    sizes = done.stdout.rsplit("memory.db: ", 1)[1]
    start, end = (float(part.split()[0]) for part in sizes.split("->"))
    assert end < start / 5  # 200 versions of 2 kB went back to the disk

    missing = subprocess.run(
        [*command(), "compact", "--data-dir", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
    )
    assert missing.returncode == 1 and "no memory at" in missing.stderr


@BOTH_BACKENDS
def test_compaction_racing_writers_on_other_connections_loses_nothing(
    tmp_path: Path, ctx: CallContext, database: dict[str, str]
) -> None:
    """Two writers (each its own Memory: its own SQLite connection and index handle, as two servers
    have) update and search while a third compacts over and over; every acknowledged write is what
    the memory holds at the end, the ledger matches its log and the index holds exactly the live items."""
    import threading

    settings = Settings(data_dir=tmp_path / "data", compact_every=0, **database)
    with Memory(settings) as setup:
        ids = [setup.insert(ctx, "semantic", f"Fact {n} about the garden.").id for n in range(6)]
    last: dict[str, str] = {}
    failures: list[BaseException] = []
    removed: list[int] = []
    stop = threading.Event()

    def writer(number: int) -> None:
        try:
            with Memory(settings) as memory:
                mine = ids[number::2]  # each writer owns its items, so the last acknowledged text is known
                # 40 rounds, and on until the compactor has run 3 times while writes go on (a fast
                # writer could otherwise finish before the compactor's second pass)
                for round_ in range(2000):
                    if round_ >= 40 and len(removed) >= 3:
                        break
                    item_id = mine[round_ % len(mine)]
                    text = f"Fact {item_id} round {round_} by writer {number}."
                    memory.update(ctx, "semantic", item_id, text)
                    last[item_id] = text
                    if round_ % 10 == 0:
                        memory.search(ctx, "garden fact", method="bm25", top_k=3)
        except BaseException as exc:
            failures.append(exc)

    def compactor() -> None:
        try:
            with Memory(settings) as memory:
                while not stop.is_set():
                    removed.append(memory.compact(history_versions=1).operations_removed)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    background = threading.Thread(target=compactor)
    background.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    background.join()
    assert failures == []
    assert len(removed) > 2 and sum(removed) > 0  # the compactions did run during the writes
    with Memory(settings) as memory:
        final = {item.id: item.content for item in memory.iter_items("default")}
        assert set(final) == set(ids)
        assert final == last  # every item's last acknowledged update, nothing lost or older
        assert_consistent(memory)
        memory.sync_index()  # the index catches up with the last writes across the compactions
        assert diagnose(memory, repair=False).healthy
