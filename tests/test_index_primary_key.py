"""The index table declares `id` its primary key, so concurrent merge-inserts of one new id leave
one row: against real LanceDB tables, beside the same table without the key, which duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa

from mcp_memalpha.embedding import EMBEDDING_DIM, Embedder
from mcp_memalpha.store.index import PRIMARY_KEY, TABLE, SearchIndex


def rows(schema: pa.Schema, item_id: str, content: str) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "id": [item_id],
            "namespace": ["default"],
            "memory_type": ["semantic"],
            "content": [content],
            "search_text": [content],
            "event_ts": [0.0],
            "vector": [[0.0] * EMBEDDING_DIM],
        },
        schema=schema,
    )


def merge_twice_concurrently(path: Path, schema: pa.Schema) -> dict[str, list[Any]]:
    """Two writers, each with its own connection, both open the table at the same version and see
    no row for `e-new`; each then merge-inserts it. The second commits against a version that the
    first has already changed: the race of two index writers, made deterministic."""
    lancedb.connect(str(path)).create_table(TABLE, data=rows(schema, "e-old", "already there"), schema=schema)
    first = lancedb.connect(str(path)).open_table(TABLE)  # no read_consistency_interval: its version stays put
    second = lancedb.connect(str(path)).open_table(TABLE)
    assert first.count_rows() == second.count_rows() == 1
    for writer, content in ((first, "written by the first"), (second, "written by the second")):
        merge = writer.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
        merge.execute(rows(schema, "e-new", content))
    return lancedb.connect(str(path)).open_table(TABLE).to_arrow().select(["id", "content"]).to_pydict()


def index_schema(tmp_path: Path) -> pa.Schema:
    schema: pa.Schema = SearchIndex(tmp_path / "unused", Embedder())._schema()
    return schema


def test_the_index_table_declares_id_its_primary_key(tmp_path: Path) -> None:
    field = index_schema(tmp_path).field("id")
    assert not field.nullable
    assert {k.decode(): v.decode() for k, v in (field.metadata or {}).items()} == PRIMARY_KEY


def test_two_concurrent_merge_inserts_of_one_new_id_leave_one_row(tmp_path: Path) -> None:
    table = merge_twice_concurrently(tmp_path / "keyed", index_schema(tmp_path))
    assert sorted(table["id"]) == ["e-new", "e-old"]
    # the second writer's insert conflicted with the first's, and was retried as an update
    assert table["content"][table["id"].index("e-new")] == "written by the second"


def test_without_the_primary_key_both_inserts_commit_and_the_id_has_two_rows(tmp_path: Path) -> None:
    """Why the key is declared: the naive table (the same columns, no key) duplicates the id."""
    keyed = index_schema(tmp_path)
    naive = pa.schema([pa.field(f.name, f.type, nullable=f.nullable) for f in keyed])
    table = merge_twice_concurrently(tmp_path / "naive", naive)
    assert sorted(table["id"]) == ["e-new", "e-new", "e-old"]
