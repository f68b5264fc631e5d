"""The memory service on real SQLite and LanceDB files: rules, errors, index catch-up."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from mcp_memalpha import CallContext, CapacityExceeded, InvalidArgument, Memory, NotFound, Settings, VersionConflict
from mcp_memalpha.excerpt import render_hit
from mcp_memalpha.ids import ID_PATTERN
from mcp_memalpha.ranking import hybrid_fusion
from mcp_memalpha.store.migrations import MIGRATIONS
from mcp_memalpha.tokens import count_tokens
from tests.conftest import BOTH_BACKENDS


def live_ids(memory: Memory) -> set[str]:
    return {item.id for item in memory.iter_items(None)}


@BOTH_BACKENDS
def test_insert_assigns_short_unique_ids_and_records_everything(memory: Memory, ctx: CallContext) -> None:
    items = [memory.insert(ctx, "episodic", f"event {i}", f"2024-01-{i % 28 + 1:02d}") for i in range(500)]
    assert len({item.id for item in items}) == 500
    assert all(ID_PATTERN.match(item.id) and len(item.id) == 8 for item in items)
    first = items[0]
    assert (first.version, first.source, first.namespace, first.event_time) == (
        1,
        "client",
        "default",
        "2024-01-01T00:00:00",
    )
    with memory.ledger.read() as tx:
        assert tx.head() == 500
        assert [op.op for op in tx.history(first.id)] == ["insert"]


@BOTH_BACKENDS
def test_update_delete_versions_and_history(memory: Memory, ctx: CallContext) -> None:
    item = memory.insert(ctx, "semantic", "Ana likes tea")
    updated = memory.update(ctx, "semantic_memory", item.id, "Ana likes green tea", expected_version=1)
    assert updated.version == 2 and updated.created_at == item.created_at
    with pytest.raises(VersionConflict) as conflict:
        memory.update(ctx, "semantic", item.id, "Ana likes coffee", expected_version=1)
    assert conflict.value.current == 2 and conflict.value.current_content == "Ana likes green tea"
    deleted = memory.delete(ctx, "semantic", item.id, expected_version=2)
    assert deleted.version == 3 and deleted.deleted_at
    with pytest.raises(NotFound, match="deleted"):
        memory.update(ctx, "semantic", item.id, "again")
    history = memory.history(ctx, item.id)
    assert [(op.op, op.version, op.content) for op in history] == [
        ("insert", 1, "Ana likes tea"),
        ("update", 2, "Ana likes green tea"),
        ("delete", 3, None),
    ]


@BOTH_BACKENDS
def test_unknown_and_mistyped_ids_are_errors(memory: Memory, ctx: CallContext) -> None:
    item = memory.insert(ctx, "episodic", "went swimming")
    with pytest.raises(NotFound, match="memory_id"):
        memory.delete(ctx, "episodic", "e-aaaaaa")
    with pytest.raises(InvalidArgument, match=r"memory_type: memory '.*' is episodic memory, not semantic"):
        memory.update(ctx, "semantic", item.id, "x")
    with pytest.raises(InvalidArgument, match=r"memory_id: .* is not a memory id"):
        memory.delete(ctx, "episodic", "'; DROP TABLE items; --")
    with pytest.raises(InvalidArgument, match="memory_id: is required"):
        memory.update(ctx, "episodic", None, "x")
    # copying slips are forgiven
    assert memory.update(ctx, "episodic", f" [{item.id.upper()}] ", "went swimming twice").version == 2


@BOTH_BACKENDS
def test_content_limits(memory: Memory, ctx: CallContext, settings: Settings) -> None:
    with pytest.raises(InvalidArgument, match="content: is empty"):
        memory.insert(ctx, "semantic", " \n ")
    with pytest.raises(CapacityExceeded, match=f"over the limit of {settings.max_content_chars} characters"):
        memory.insert(ctx, "semantic", "x" * (settings.max_content_chars + 1))
    with pytest.raises(InvalidArgument, match="NUL"):
        memory.insert(ctx, "semantic", "a\x00b")
    with pytest.raises(InvalidArgument, match="memory_type: core memory cannot be inserted"):
        memory.insert(ctx, "core", "x")
    assert live_ids(memory) == set()  # nothing was half-written


@BOTH_BACKENDS
def test_core_capacity_is_refused_not_truncated(tmp_path, database: dict[str, str]) -> None:
    settings = Settings(data_dir=tmp_path, core_capacity_tokens=20, **database)
    with Memory(settings) as memory:
        ctx = CallContext()
        memory.set_core(ctx, "Sam is a nurse in Leeds.")
        with pytest.raises(CapacityExceeded) as error:
            memory.set_core(ctx, "Sam " * 30)
        assert error.value.size == 30 and error.value.limit == 20
        assert "30 tokens" in str(error.value) and "20 tokens" in str(error.value)
        assert memory.core(ctx).content == "Sam is a nurse in Leeds."
        cleared = memory.clear_core(ctx, expected_version=1)
        assert (cleared.content, cleared.version) == ("", 2)


@BOTH_BACKENDS
def test_namespaces_are_separate(memory: Memory) -> None:
    work, home = CallContext(namespace="work"), CallContext(namespace="home")
    item = memory.insert(work, "semantic", "The quarterly report is due Friday")
    memory.set_core(home, "Home core")
    assert memory.get(home, [item.id]) == ([], [item.id])
    with pytest.raises(NotFound):
        memory.delete(home, "semantic", item.id)
    assert memory.search(home, "quarterly report").hits == []
    assert [h.item.id for h in memory.search(work, "quarterly report").hits] == [item.id]
    assert memory.core(work).content == ""


@BOTH_BACKENDS
def test_search_methods_filters_and_budget(memory: Memory, ctx: CallContext) -> None:
    hike = memory.insert(ctx, "episodic", "Went hiking in the Alps with Jonas", "2023-07-01")
    memory.insert(ctx, "episodic", "Cooked pasta for dinner", "2023-07-02")
    fact = memory.insert(ctx, "semantic", "Jonas is an experienced mountain guide")
    for method in ("bm25", "vector", "hybrid", "text-embedding"):
        hits = memory.search(ctx, "hiking Alps", method=method).hits
        assert hits[0].item.id == hike.id, method
    only_semantic = memory.search(ctx, "Jonas", memory_types=["semantic_memory"]).hits
    assert [h.item.id for h in only_semantic] == [fact.id]
    july_second = memory.search(ctx, "dinner hiking", start_time="2023-07-02", end_time="2023-07-02").hits
    assert [h.item.content for h in july_second] == ["Cooked pasta for dinner"]
    budget = memory.search(ctx, "Jonas hiking", max_tokens=12)
    assert budget.total_tokens <= 12 and budget.truncated
    assert memory.search(ctx, "Jonas hiking").truncated is False
    with pytest.raises(InvalidArgument, match=r"end_time: .* is before start_time"):
        memory.search(ctx, "x", start_time="2023-08-01", end_time="2023-07-01")
    with pytest.raises(InvalidArgument, match="query: is empty"):
        memory.search(ctx, "  ")


@BOTH_BACKENDS
def test_search_is_deterministic(memory: Memory, ctx: CallContext) -> None:
    for i in range(40):
        memory.insert(ctx, "semantic", f"Note {i % 4} about the garden")
    first = [h.item.id for h in memory.search(ctx, "garden note").hits]
    assert all([h.item.id for h in memory.search(ctx, "garden note").hits] == first for _ in range(3))


@BOTH_BACKENDS
def test_deleted_items_never_returned_even_if_index_is_stale(memory: Memory, ctx: CallContext) -> None:
    item = memory.insert(ctx, "semantic", "The spare key is under the blue flowerpot")
    memory.sync_index()
    # Delete straight in the ledger, leaving the index behind on purpose.
    memory.delete(ctx, "semantic", item.id)
    assert item.id in memory.index.ids()
    ranked = memory._rank("spare key flowerpot", memory_filter(ctx), "hybrid", 10)
    assert item.id in [i for i, _ in ranked]  # the stale index still has it ...
    assert memory.search(ctx, "spare key flowerpot").hits == []  # ... but search never returns it
    assert item.id not in memory.index.ids()  # and the search caught the index up


def memory_filter(ctx: CallContext):
    from mcp_memalpha.store.index import Filter

    return Filter(ctx.namespace, ("episodic", "semantic"))


@BOTH_BACKENDS
def test_index_rebuilt_when_folder_deleted_or_corrupted(memory: Memory, ctx: CallContext, settings: Settings) -> None:
    items = [memory.insert(ctx, "semantic", f"Fact number {i} about llamas") for i in range(30)]
    memory.delete(ctx, "semantic", items[0].id)
    memory.sync_index()
    shutil.rmtree(settings.index_path)
    assert memory.index.is_behind(memory.ledger)
    assert len(memory.search(ctx, "llamas", top_k=50).hits) == 29
    assert memory.index.ids() == live_ids(memory)
    # Corrupt the table's files: the next sync notices and rebuilds from the ledger.
    for path in (settings.index_path / "items.lance").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    memory.index._table = None
    memory.index._db = None
    memory.insert(ctx, "semantic", "One more llama fact")
    assert len(memory.search(ctx, "llama", top_k=50).hits) == 30
    assert memory.index.ids() == live_ids(memory)


@BOTH_BACKENDS
def test_index_catches_up_after_another_process_wrote(settings: Settings, ctx: CallContext) -> None:
    with Memory(settings) as first, Memory(settings) as second:
        first.sync_index()
        written = [second.insert(ctx, "episodic", f"Second process event {i}") for i in range(25)]
        assert first.index.is_behind(first.ledger)
        hits = first.search(ctx, "second process event", top_k=50).hits
        assert {h.item.id for h in hits} == {w.id for w in written}


@BOTH_BACKENDS
def test_listing_pages_never_overlap_or_skip(memory: Memory, ctx: CallContext) -> None:
    expected = []
    for i in range(23):
        when = None if i % 5 == 0 else f"2024-02-{i % 7 + 1:02d}"  # ties and missing times
        expected.append(memory.insert(ctx, "episodic", f"event {i}", when).id)
    seen, cursor = [], None
    while True:
        page = memory.list_items(ctx, "episodic", limit=4, cursor=cursor)
        seen += [item.id for item in page.items]
        assert page.total == 23
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected) and len(seen) == 23
    newest = memory.list_items(ctx, "episodic", limit=23, newest_first=True).items
    assert [i.id for i in newest] == list(reversed(seen))
    with pytest.raises(InvalidArgument, match="cursor"):
        memory.list_items(ctx, "episodic", cursor="garbage")


@BOTH_BACKENDS
def test_ledger_is_all_or_nothing(memory: Memory, ctx: CallContext) -> None:
    """A failure inside a write transaction leaves no trace."""
    with pytest.raises(RuntimeError), memory.ledger.write() as tx:
        from mcp_memalpha.store.ledger import ItemRow

        tx.insert_item(ItemRow("s-abcdef", "default", "semantic", "x", None, None, "t", "t", 1, "client", None, None))
        raise RuntimeError("crash in the middle")
    assert memory.get(ctx, ["s-abcdef"]) == ([], ["s-abcdef"])


def test_schema_is_migrated_once_and_recorded(settings: Settings) -> None:
    with Memory(settings), Memory(settings):
        pass
    conn = sqlite3.connect(settings.ledger_path)
    assert [row[0] for row in conn.execute("SELECT name FROM migrations")] == [name for name, _ in MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_newer_schema_is_refused(settings: Settings) -> None:
    with Memory(settings):
        pass
    conn = sqlite3.connect(settings.ledger_path)
    conn.execute("INSERT INTO migrations VALUES ('9999_future', 'now')")
    conn.commit()
    with pytest.raises(Exception, match="newer mcp-memalpha"):
        Memory(settings).open()


def test_hybrid_fusion_leads_with_keywords_and_breaks_ties_with_meaning() -> None:
    text = [("a", 8.0), ("b", 8.0), ("c", 2.0)]
    vector = [("b", 0.9), ("d", 0.8), ("a", 0.3), ("c", 0.1)]
    fused = [item for item, _ in hybrid_fusion(text, vector)]
    assert fused[:2] == ["b", "a"]  # equal BM25: the closer meaning wins
    assert fused.index("c") < fused.index("d")  # a keyword match beats meaning alone
    assert [i for i, _ in hybrid_fusion([("y", 1.0), ("x", 1.0)], [])] == ["x", "y"]  # deterministic ties


def test_upgrade_from_the_first_schema_keeps_data(settings: Settings) -> None:
    """A data directory written before 0002 (no ledger identity) opens, keeps its items, and indexes."""
    settings.data_dir.mkdir(parents=True)
    conn = sqlite3.connect(settings.ledger_path)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0][1]:
        conn.execute(statement)
    conn.execute("INSERT INTO migrations VALUES ('0001_initial', 'then')")
    conn.execute(
        "INSERT INTO items VALUES ('s-abcdef', 'default', 'semantic', 'Old fact about owls', NULL, NULL, "
        "'2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z', 1, 'client', NULL, NULL)"
    )
    conn.execute(
        "INSERT INTO ops (at, namespace, op, memory_type, item_id, version, content, source) "
        "VALUES ('2024-01-01T00:00:00.000000Z', 'default', 'insert', 'semantic', 's-abcdef', 1, "
        "'Old fact about owls', 'client')"
    )
    conn.commit()
    conn.close()
    with Memory(settings) as memory:
        assert len(memory.ledger.ledger_id) == 32
        assert [h.item.id for h in memory.search(CallContext(), "owls").hits] == ["s-abcdef"]


def test_index_rebuilds_when_the_ledger_is_restored_from_a_backup(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    ctx = CallContext()
    with Memory(settings) as memory:
        memory.insert(ctx, "semantic", "Tea is good")
        memory.sync_index()
        backup = tmp_path / "backup.db"
        with sqlite3.connect(settings.ledger_path) as source, sqlite3.connect(backup) as target:
            source.backup(target)
        for i in range(4):
            memory.insert(ctx, "semantic", f"Later fact {i}")
        memory.sync_index()
    settings.ledger_path.unlink()
    for suffix in ("-wal", "-shm"):
        settings.ledger_path.with_name(settings.ledger_path.name + suffix).unlink(missing_ok=True)
    backup.rename(settings.ledger_path)
    with Memory(settings) as memory:
        oolong = memory.insert(ctx, "semantic", "Oolong is a semi-oxidised tea")
        assert [h.item.id for h in memory.search(ctx, "oolong", method="bm25").hits] == [oolong.id]
        assert memory.index.ids() == {i.id for i in memory.iter_items(None)}


@BOTH_BACKENDS
def test_first_build_interrupted_never_duplicates_rows(memory: Memory, ctx: CallContext, settings: Settings) -> None:
    for i in range(3):
        memory.insert(ctx, "semantic", f"Fact {i} about otters")
    memory.sync_index()
    (settings.index_path / "state.json").write_text("")  # as if the process died before recording it
    memory.index._table = None
    hits = memory.search(ctx, "otters", top_k=10).hits
    assert len(hits) == 3 and len(memory.index._table.to_arrow()) == 3


@BOTH_BACKENDS
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_out_of_range_times_are_argument_errors(memory: Memory, ctx: CallContext, value: str) -> None:
    with pytest.raises(InvalidArgument, match=r"timestamp: .*out of the supported range"):
        memory.insert(ctx, "episodic", "x", value)
    with pytest.raises(InvalidArgument, match="start_time"):
        memory.search(ctx, "x", start_time=value)


@BOTH_BACKENDS
def test_an_explicit_midnight_end_time_is_not_the_whole_day(memory: Memory, ctx: CallContext) -> None:
    memory.insert(ctx, "episodic", "Lunch with Bo", "2024-01-01T12:00:00Z")
    assert memory.search(ctx, "lunch", end_time="2024-01-01T00:00:00Z").hits == []
    assert len(memory.search(ctx, "lunch", end_time="2024-01-01").hits) == 1
    assert len(memory.search(ctx, "lunch", end_time="1 January 2024").hits) == 1


@BOTH_BACKENDS
def test_invalid_unicode_and_bad_contexts_are_refused(memory: Memory, ctx: CallContext) -> None:
    with pytest.raises(InvalidArgument, match="content: contains invalid Unicode"):
        memory.insert(ctx, "semantic", "bad \ud800 text")
    with pytest.raises(InvalidArgument, match="query: contains invalid Unicode"):
        memory.search(ctx, "\udfff")
    with pytest.raises(InvalidArgument, match="new_content"):
        memory.set_core(ctx, "x\ud800")
    with pytest.raises(InvalidArgument, match="namespace"):
        CallContext(namespace="x' OR '1'='1")
    with pytest.raises(InvalidArgument, match="namespace"):
        CallContext(namespace=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="cursor"):
        memory.list_items(ctx, "semantic", cursor="nan|a|b")


@BOTH_BACKENDS
def test_transactions_do_not_nest(memory: Memory) -> None:
    with memory.ledger.write(), pytest.raises(RuntimeError, match="nesting"), memory.ledger.read():
        pass


@BOTH_BACKENDS
def test_fragments_are_found_through_their_event_context(memory: Memory, ctx: CallContext) -> None:
    """A reply like "Yes, loved it" is found by the question it answers, and follows edits to it."""
    when = "2:00 pm on 3 June 2023"
    question = memory.insert(ctx, "episodic", "Mia: Did you go to the pottery class?", when)
    answer = memory.insert(ctx, "episodic", "Leo: Yes! I made a bowl.", when)
    memory.insert(ctx, "episodic", "Mia: I also signed up for pottery.", "2023-07-01")  # another event
    found = [h.item.id for h in memory.search(ctx, "pottery class", method="bm25").hits]
    assert answer.id in found
    memory.update(ctx, "episodic", question.id, "Mia: Did you go to the yoga class?")
    assert answer.id not in [h.item.id for h in memory.search(ctx, "pottery", method="bm25").hits]
    assert answer.id in [h.item.id for h in memory.search(ctx, "yoga class", method="bm25").hits]
    memory.delete(ctx, "episodic", question.id)
    assert [h.item.id for h in memory.search(ctx, "yoga", method="bm25").hits] == []


@BOTH_BACKENDS
def test_hits_read_with_dates_and_resolved_relative_dates(memory: Memory, ctx: CallContext) -> None:
    memory.insert(ctx, "episodic", "Caroline: I went to the support group yesterday.", "1:56 pm on 8 May, 2023")
    hit = memory.search(ctx, "support group").hits[0]
    assert render_hit(hit.item) == (
        "[8 May 2023] Caroline: I went to the support group yesterday. (yesterday = 7 May 2023)"
    )


@BOTH_BACKENDS
def test_a_write_rewrites_only_itself_and_its_successor_in_the_index(memory: Memory, ctx: CallContext) -> None:
    """Event context costs O(1) index rows per write, however many memories share the event time."""
    items = []
    for i in range(40):
        items.append(memory.insert(ctx, "episodic", f"turn {i}", "2024-03-01T10:00"))
        memory.sync_index()
    assert memory.sync_index() == 0
    memory.insert(ctx, "episodic", "turn 40", "2024-03-01T10:00")
    assert memory.sync_index() == 1  # appended last: nothing follows it
    memory.update(ctx, "episodic", items[10].id, "turn 10, revised")
    assert memory.sync_index() == 2  # itself and turn 11
    memory.delete(ctx, "episodic", items[20].id)
    assert memory.sync_index() == 2  # its removal and turn 21, which now follows turn 19


def search_texts(memory: Memory) -> dict[str, str]:
    table = memory.index._table_for_query()
    data = table.to_arrow()
    return dict(zip(data.column("id").to_pylist(), data.column("search_text").to_pylist(), strict=True))


@BOTH_BACKENDS
def test_moving_a_memory_to_another_event_rewrites_its_old_neighbour(memory: Memory, ctx: CallContext) -> None:
    a = memory.insert(ctx, "episodic", "alpha turn one", "2024-01-01T10:00")
    b = memory.insert(ctx, "episodic", "bravo zebra turn two", "2024-01-01T10:00")
    c = memory.insert(ctx, "episodic", "charlie turn three", "2024-01-01T10:00")
    memory.sync_index()
    assert search_texts(memory)[c.id] == "bravo zebra turn two\ncharlie turn three"
    memory.update(ctx, "episodic", b.id, "bravo zebra turn two", timestamp="2024-02-02T10:00")
    memory.sync_index()
    texts = search_texts(memory)
    assert texts[c.id] == "alpha turn one\ncharlie turn three" and texts[b.id] == "bravo zebra turn two"
    assert [h.item.id for h in memory.search(ctx, "zebra", method="bm25").hits] == [b.id]
    assert a.id in texts


def test_a_restored_ledger_with_new_writes_is_reindexed(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    ctx = CallContext()
    with Memory(settings) as memory:
        for i in range(3):
            memory.insert(ctx, "semantic", f"old fact {i}")
        with sqlite3.connect(settings.ledger_path) as source, sqlite3.connect(tmp_path / "backup.db") as target:
            source.backup(target)
        for i in range(3):
            memory.insert(ctx, "semantic", f"lost fact {i}")
        memory.sync_index()
    for suffix in ("", "-wal", "-shm"):
        settings.ledger_path.with_name(settings.ledger_path.name + suffix).unlink(missing_ok=True)
    (tmp_path / "backup.db").rename(settings.ledger_path)
    with Memory(settings) as memory:
        new = [memory.insert(ctx, "semantic", f"kiwi fruit note {i}") for i in range(4)]  # head passes the old index
        assert {h.item.id for h in memory.search(ctx, "kiwi fruit note", method="bm25").hits} == {n.id for n in new}
        assert {h.item.id for h in memory.search(ctx, "kiwi fruit note", method="vector", top_k=4).hits} == {
            n.id for n in new
        }
        assert memory.index.ids() == {i.id for i in memory.iter_items(None)}


@BOTH_BACKENDS
def test_core_writes_do_not_leave_the_index_behind(memory: Memory, ctx: CallContext) -> None:
    memory.insert(ctx, "semantic", "a fact")
    memory.search(ctx, "fact")
    memory.set_core(ctx, "The user likes facts.")
    memory.search(ctx, "fact")
    assert not memory.index.is_behind(memory.ledger)


@BOTH_BACKENDS
def test_relative_dates_at_the_edge_of_time_do_not_break_search(memory: Memory, ctx: CallContext) -> None:
    memory.insert(ctx, "episodic", "I moved here yesterday", "0001-01-01")
    memory.insert(ctx, "episodic", "meeting next month", "9999-12-20")
    texts = [render_hit(h.item) for h in memory.search(ctx, "moved meeting").hits]
    assert sorted(texts) == ["[1 January 1] I moved here yesterday", "[20 December 9999] meeting next month"]


@BOTH_BACKENDS
def test_deleted_memories_can_be_listed_and_restored(memory: Memory, ctx: CallContext) -> None:
    item = memory.insert(ctx, "semantic", "The spare key is with Ada")
    memory.delete(ctx, "semantic", item.id)
    gone = memory.list_items(ctx, "semantic", deleted=True)
    assert [i.id for i in gone.items] == [item.id] and gone.total == 1
    assert memory.search(ctx, "spare key").hits == []
    with pytest.raises(VersionConflict):
        memory.restore(ctx, "semantic", item.id, expected_version=1)
    back = memory.restore(ctx, "semantic", item.id, expected_version=2)
    assert (back.version, back.content, back.deleted_at) == (3, "The spare key is with Ada", None)
    assert [h.item.id for h in memory.search(ctx, "spare key", method="bm25").hits] == [item.id]
    assert [op.op for op in memory.history(ctx, item.id)] == ["insert", "delete", "restore"]
    assert memory.list_items(ctx, "semantic", deleted=True).total == 0
    with pytest.raises(InvalidArgument, match="not deleted"):
        memory.restore(ctx, "semantic", item.id)
    with pytest.raises(NotFound):
        memory.restore(CallContext(namespace="other"), "semantic", item.id)


@BOTH_BACKENDS
def test_long_hits_are_excerpted_for_the_query_and_whole_on_request(memory: Memory, ctx: CallContext) -> None:
    long = (
        "Melanie: The kids are back at school and the house is quiet again. "
        "I finally finished the lake sunrise painting last week. "
        "We also adopted a second cat, her name is Bailey. Work has been busy. "
        "My sister is visiting soon and we plan to go hiking in the mountains together. "
        "The garden needs a lot of work before the summer, and the fence is broken again."
    )
    stored = memory.insert(ctx, "episodic", long, "25 May 2023")
    short = memory.insert(ctx, "semantic", "Melanie paints landscapes.")
    # 10 tokens a hit, 20 for the first four
    hits = {h.item.id: h for h in memory.search(ctx, "Melanie painting", excerpt_tokens=10).hits}
    assert hits[short.id].text == "Melanie paints landscapes." and not hits[short.id].excerpt
    cut = hits[stored.id]
    assert cut.excerpt and "sunrise painting" in cut.text and "Bailey" not in cut.text
    # relative dates are resolved in what is shown, and only there
    assert cut.text.endswith("(last week = the week before 25 May 2023)")
    assert cut.tokens < count_tokens(render_hit(cut.item))
    whole = {h.item.id: h for h in memory.search(ctx, "Melanie painting", excerpt_tokens=0).hits}[stored.id]
    assert whole.text == render_hit(whole.item) and not whole.excerpt
    default = [h.text for h in memory.search(ctx, "Melanie painting").hits]  # the setting: 36 tokens
    assert memory.settings.search_excerpt_tokens == 36
    assert (
        default
        == [h.text for h in memory.search(ctx, "Melanie painting", excerpt_tokens=36).hits]
        != [h.text for h in memory.search(ctx, "Melanie painting", excerpt_tokens=0).hits]
    )
    with pytest.raises(InvalidArgument, match="excerpt_tokens"):
        memory.search(ctx, "Melanie", excerpt_tokens=-1)


@BOTH_BACKENDS
def test_a_question_about_two_people_finds_each_of_them(memory: Memory, ctx: CallContext) -> None:
    for i in range(6):
        memory.insert(ctx, "semantic", f"Jon likes to destress by dancing, way {i}.")
    gina = memory.insert(ctx, "semantic", "Gina unwinds with long walks.")
    found = [h.item.id for h in memory.search(ctx, "How do Jon and Gina like to destress?", top_k=3).hits]
    assert gina.id in found
