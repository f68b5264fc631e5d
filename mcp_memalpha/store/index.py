"""The LanceDB search index: full-text (BM25) and vectors, derived from the ledger.

The index never decides what exists; the ledger does. `sync()` brings the index up to the
ledger's newest operation: it re-reads the current state of every item touched since the last
applied sequence number and upserts or deletes it, which is idempotent, so a crash between the
ledger commit and the index write only means the next sync does the same work again.

The applied sequence number lives in `index/state.json`, inside the folder it describes: delete
or lose the folder and the index is rebuilt from scratch; restore an old copy and it catches up.
A cross-process file lock (`index.lock`, beside the folder) lets one process sync at a time.
"""

from __future__ import annotations

import bisect
import errno
import itertools
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from filelock import FileLock

if TYPE_CHECKING:
    from mcp_memalpha.store.vectors import VectorCache

from mcp_memalpha.embedding import Embedder
from mcp_memalpha.errors import MemalphaError, StorageError
from mcp_memalpha.expansion import FUZZY_WEIGHT, Expansion
from mcp_memalpha.ids import is_valid_id
from mcp_memalpha.settings import NAMESPACE_PATTERN
from mcp_memalpha.store.ledger import ItemRow, Ledger, Tx
from mcp_memalpha.store.terms import TOKENIZER, Clause, TermStats
from mcp_memalpha.timeparse import from_stored

log = logging.getLogger(__name__)

TABLE = "items"
STATE_FILE = "state.json"
TERMS_FILE = "terms.sqlite"  # full-text statistics per namespace (`terms.py`)
# Bump when the table's columns or their meaning change: older indexes are rebuilt.
# 3: `id` is the table's (unenforced) primary key; 4: full-text statistics per namespace (terms.py).
INDEX_FORMAT = 4
# Lance's field metadata declaring a column the table's primary key. Its merge-insert then records
# the keys it inserts, so of two concurrent merge-inserts of one new id the second conflicts and
# retries as an update; without it both commit and the id has two rows.
PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}
BATCH = 5000
# An incremental sync touching more items than this rebuilds the index in one pass instead.
REBUILD_ABOVE = 5000
# Compact fragments and fold new rows into the full-text index after this many index commits:
# each single insert leaves a small fragment, and a search reads every one (benchmarks/fragments.py).
OPTIMIZE_EVERY = 16
# Old table versions stay readable this long, for readers in other processes.
KEEP_OLD_VERSIONS = timedelta(minutes=10)
QUERY_ATTEMPTS = 6  # index queries per search, counting retries after a failure or a concurrent rebuild
# Free file descriptors a rebuild needs at least: with fewer, the folder is not thrown away.
REBUILD_DESCRIPTORS = 32
T = TypeVar("T")


@dataclass(frozen=True)
class Filter:
    """What a search may return. Every value is validated before it reaches a `where` string."""

    namespace: str
    memory_types: tuple[str, ...]
    start_ts: float | None = None
    end_ts: float | None = None

    def where(self) -> str:
        if not NAMESPACE_PATTERN.fullmatch(self.namespace):
            raise ValueError(f"unsafe namespace {self.namespace!r}")
        types = [t for t in self.memory_types if t in ("episodic", "semantic")]
        clauses = [
            f"namespace = '{self.namespace}'",
            "memory_type IN (" + ", ".join(f"'{t}'" for t in types) + ")",
        ]
        if self.start_ts is not None:
            clauses.append(f"event_ts >= {float(self.start_ts)!r}")
        if self.end_ts is not None:
            clauses.append(f"event_ts <= {float(self.end_ts)!r}")
        return " AND ".join(clauses)


class SearchIndex:
    def __init__(self, path: Path, embedder: Embedder) -> None:
        self.path = path
        self.embedder = embedder
        self._lock = threading.Lock()
        self._file_lock = FileLock(str(path.parent / "index.lock"))
        self._db: Any = None
        self._table: Any = None
        self._vector_cache: VectorCache | None = None
        self._vector_lock = threading.Lock()
        self._terms: TermStats | None = None
        self._terms_generation = ""
        self._terms_lock = threading.Lock()

    # state -------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        """The state file, or {} (rebuild) when it is missing or garbled; raises when it could not
        be read for lack of file descriptors, which says nothing about the index."""
        try:
            return dict(json.loads((self.path / STATE_FILE).read_text()))
        except OSError as exc:
            _raise_if_out_of_files(exc)
            return {}
        except (ValueError, TypeError):
            return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.path / (STATE_FILE + ".tmp")
        with open(tmp, "w") as handle:
            handle.write(json.dumps(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path / STATE_FILE)

    # opening -----------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._db is None:
            from mcp_memalpha.store.lance import lancedb

            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Interval 0: every query sees commits made by other processes.
            self._db = lancedb().connect(str(self.path), read_consistency_interval=timedelta(0))
        return self._db

    def _schema(self) -> Any:
        import pyarrow as pa

        return pa.schema(
            [
                pa.field("id", pa.string(), nullable=False, metadata=PRIMARY_KEY),
                ("namespace", pa.string()),
                ("memory_type", pa.string()),
                ("content", pa.string()),
                ("search_text", pa.string()),
                ("event_ts", pa.float64()),
                ("vector", pa.list_(pa.float32(), self.embedder.dim)),
            ]
        )

    def _reset(self, ledger_id: str) -> Any:
        """Drop whatever is there and start an empty table (caller holds the file lock).

        Never while file descriptors run out: the failure that led here was not damage, and the
        new build could not be written either."""
        _refuse_without_descriptors()
        self._db = None
        self._table = None
        self._close_terms()
        shutil.rmtree(self.path, ignore_errors=True)
        table = self._connect().create_table(TABLE, schema=self._schema())
        generation = uuid.uuid4().hex  # tells every process's vector copy and statistics to reload
        with self._terms_lock:
            self._terms, self._terms_generation = TermStats.create(self.path / TERMS_FILE), generation
        self._write_state(
            {
                "format": INDEX_FORMAT,
                "ledger_id": ledger_id,
                "generation": generation,
                "applied_seq": 0,
                "applied_mark": "",
                "complete": False,
                "commits_since_optimize": 0,
            }
        )
        return table

    @staticmethod
    def _reflects(state: dict[str, Any], ledger: Ledger, tx: Tx) -> bool:
        """Whether the index was completely built from this ledger's history as it stands now.

        The mark of the last applied operation catches a memory.db restored from a backup:
        same ledger id, but its operation at that sequence number is another one, or none.
        """
        applied = int(state.get("applied_seq", 0))
        return (
            bool(state.get("complete"))
            and state.get("format") == INDEX_FORMAT
            and state.get("ledger_id") == ledger.ledger_id
            and state.get("applied_mark", "") == tx.op_mark(applied)
        )

    def _open_for_sync(self, ledger: Ledger, rebuild: bool = False) -> Any:
        """The table, or a fresh one when the folder is missing, from another ledger or another
        history of it (a restored memory.db), never completed its first build, or unreadable."""
        with ledger.read() as tx:
            reflects = self._reflects(self._read_state(), ledger, tx)
        if rebuild or not reflects:
            return self._reset(ledger.ledger_id)
        try:
            table = self._connect().open_table(TABLE)
            table.count_rows()
            return table
        except Exception as exc:  # any failure to read it: rebuild from the ledger
            _raise_if_out_of_files(exc)
            log.warning("search index at %s is unreadable (%s); rebuilding it from the ledger", self.path, exc)
            return self._reset(ledger.ledger_id)

    def _table_for_query(self) -> Any:
        """The table; raises if it cannot be opened. After a sync it always exists, so a search
        must not quietly treat a missing table as an empty one (the caller rebuilds it instead)."""
        if self._table is None:
            self._table = self._connect().open_table(TABLE)
        return self._table

    # syncing -----------------------------------------------------------------------------
    def generation(self) -> str | None:
        """Which complete build of the index is on disk: it changes when the index is rebuilt,
        and is None while a build is under way (or there is no index)."""
        state = self._read_state()
        return str(state["generation"]) if state.get("complete") and "generation" in state else None

    def applied_seq(self) -> int | None:
        """The ledger sequence number the index reflects; None while no complete build exists."""
        state = self._read_state()
        return int(state.get("applied_seq", 0)) if state.get("complete") else None

    @contextmanager
    def held(self, ledger: Ledger) -> Iterator[int | None]:
        """Hold off every process's sync while the block runs (the operation log's compaction);
        yields the sequence number the index has applied, or None when its next sync rebuilds it
        from the items, needing no operation."""
        with self._lock, self._file_lock:
            state = self._read_state()
            with ledger.read() as tx:
                reflects = self._reflects(state, ledger, tx)
            yield int(state.get("applied_seq", 0)) if reflects else None

    def is_behind(self, ledger: Ledger) -> bool:
        state = self._read_state()
        with ledger.read() as tx:
            return not self._reflects(state, ledger, tx) or int(state.get("applied_seq", 0)) != tx.head()

    def sync(self, ledger: Ledger) -> int:
        """Catch up with the ledger; returns how many items were written or removed."""
        with self._lock, self._file_lock:
            with ledger.read() as tx:
                head = tx.head()
            # A big catch-up (a bulk import) is faster as one fresh build.
            big = head - int(self._read_state().get("applied_seq", 0)) > REBUILD_ABOVE
            table = self._open_for_sync(ledger, rebuild=big)
            state = self._read_state()
            applied = int(state.get("applied_seq", 0))
            fresh = not state.get("complete")
            with ledger.read() as tx:
                head = tx.head()
                mark = tx.op_mark(head)
                if fresh:
                    live, dead = list(tx.all_items(None, include_deleted=False)), list[str]()
                    previous = _previous_in_event(live)
                else:
                    live, dead, previous = _touched(tx, applied, head)
            self._table = table
            if head == applied and not fresh:
                return 0
            # A fresh table was just created empty, so plain appends cannot duplicate rows.
            commits = self._apply(table, live, dead, previous, fresh)
            state["applied_seq"] = head  # also when only core memory changed: nothing to index
            state["applied_mark"] = mark
            state["complete"] = True
            state["commits_since_optimize"] = int(state.get("commits_since_optimize", 0)) + commits
            if state["commits_since_optimize"] >= OPTIMIZE_EVERY:
                self._optimize(table)
                state["commits_since_optimize"] = 0
            self._write_state(state)
            return len(live) + len(dead)

    def _apply(self, table: Any, live: list[ItemRow], dead: list[str], previous: dict[str, str], fresh: bool) -> int:
        """Write the rows, each batch into the statistics first: a candidate the table returns
        always has its statistics (and a crash in between only means the next sync repeats it)."""
        commits = 0
        for start in range(0, len(dead), BATCH):
            ids = [i for i in dead[start : start + BATCH] if is_valid_id(i)]
            if ids:
                self._with_terms(partial(TermStats.remove, ids=ids))
                table.delete("id IN (" + ", ".join(f"'{i}'" for i in ids) + ")")
                commits += 1
        for start in range(0, len(live), BATCH):
            items = live[start : start + BATCH]
            docs = [(i.id, i.namespace, _search_text(i, previous)) for i in items]
            self._with_terms(partial(TermStats.write, docs=docs))
            batch = self._rows(items, docs)
            if fresh:
                table.add(batch)
            else:
                table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(batch)
            commits += 1
        if live and not self._has_fts(table):
            self._create_indexes(table)
        return commits

    @staticmethod
    def _create_indexes(table: Any) -> None:
        """Full-text on the search text; scalar indexes so filters do not scan every row."""
        from lancedb.index import FTS, Bitmap, BTree

        table.create_index("search_text", config=FTS(with_position=False, **TOKENIZER), replace=True)
        table.create_index("namespace", config=Bitmap(), replace=True)
        table.create_index("memory_type", config=Bitmap(), replace=True)
        table.create_index("event_ts", config=BTree(), replace=True)

    def _rows(self, items: Sequence[ItemRow], docs: Sequence[tuple[str, str, str]]) -> Any:
        import pyarrow as pa

        vectors = self.embedder.embed([item.content for item in items])
        return pa.Table.from_pydict(
            {
                "id": [i.id for i in items],
                "namespace": [i.namespace for i in items],
                "memory_type": [i.memory_type for i in items],
                "content": [i.content for i in items],
                "search_text": [text for _, _, text in docs],
                "event_ts": [i.event_ts for i in items],
                "vector": list(vectors),
            },
            schema=self._schema(),
        )

    @staticmethod
    def _has_fts(table: Any) -> bool:
        return any(index.index_type == "FTS" for index in table.list_indices())

    def _optimize(self, table: Any) -> None:
        try:
            table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS)
        except Exception as exc:  # compaction is housekeeping; a failure must not fail a write
            log.warning("index optimize failed (will retry later): %s", exc)

    def rebuild(self, ledger: Ledger) -> int:
        """Throw the index away and build it again from the ledger."""
        with self._lock, self._file_lock:
            self._reset(ledger.ledger_id)
        return self.sync(ledger)

    def repair(self, ledger: Ledger, failed_build: str | None) -> bool:
        """Rebuild the index if a query failed on the build that is still current and its files
        fail to read; returns whether it rebuilt. Decided under the locks, so that a build under
        way in another thread or process is neither taken for damage nor rebuilt a second time,
        and a sound index is never rebuilt (a failure it cannot explain is the caller's to report)."""
        with self._lock, self._file_lock:
            if self.generation() != failed_build:
                return False  # rebuilt since the query failed
            self.reopen()
            try:
                self.verify()
                return False
            except Exception as exc:
                _raise_if_out_of_files(exc)
                log.warning("search index at %s is damaged (%s); rebuilding it from the ledger", self.path, exc)
                self._reset(ledger.ledger_id)
        self.sync(ledger)
        return True

    # recovery ----------------------------------------------------------------------------
    def sync_or_rebuild(self, ledger: Ledger) -> int:
        """sync(); an index that fails to sync (damaged or missing files) is rebuilt from the
        ledger, which holds everything in it."""
        try:
            return self.sync(ledger)
        except MemalphaError:  # the ledger failed, not the index: rebuilding would not help
            raise
        except Exception as exc:
            _raise_if_out_of_files(exc)
            return self._rebuild_after(ledger, exc)

    def _rebuild_after(self, ledger: Ledger, cause: Exception) -> int:
        log.warning("the search index at %s failed (%s); rebuilding it from the ledger", self.path, cause)
        try:
            return self.rebuild(ledger)
        except MemalphaError:
            raise
        except Exception as exc:
            raise self._unrebuildable(exc) from exc

    def _unrebuildable(self, exc: Exception) -> StorageError:
        return StorageError(
            f"storage: the search index at {self.path} is damaged and could not be rebuilt ({exc}); "
            "nothing is lost (the ledger holds every memory): free disk space or fix the folder's "
            "permissions, then run `mcp-memalpha doctor --repair`"
        )

    def consistent(self, ledger: Ledger, query: Callable[[], T]) -> T:
        """What `query()` answers from one complete build of the index.

        A query that ran while the index was being rebuilt (by another thread or process) is
        asked again once the new build is done, so a half-built index never answers. A failed
        query is retried with fresh handles, then, if the index files are damaged, after
        rebuilding it from the ledger."""
        recoveries = [self._reopen_after, self._repair_after]
        for _ in range(QUERY_ATTEMPTS):
            build = self.generation()
            if build is None:  # a build under way here or elsewhere (wait for it), or none yet (make it)
                self.sync_or_rebuild(ledger)
                continue
            try:
                answer = query()
            except MemalphaError:
                raise
            except Exception as exc:
                _raise_if_out_of_files(exc)
                if self.generation() != build:  # rebuilt under the query: ask the new build
                    continue
                if not recoveries:
                    raise
                recoveries.pop(0)(ledger, exc, build)
                continue
            if self.generation() == build:
                return answer
        raise StorageError("storage: the search index was rebuilt during every try of this search; search again")

    def _reopen_after(self, ledger: Ledger, cause: Exception, _build: str | None) -> None:
        log.info("index query failed (%s); reopening the index and retrying", cause)
        self.reopen()
        self.sync_or_rebuild(ledger)

    def _repair_after(self, ledger: Ledger, cause: Exception, build: str | None) -> None:
        log.info("index query failed again (%s); checking the index files", cause)
        try:
            self.repair(ledger, build)
        except MemalphaError:
            raise
        except Exception as exc:
            raise self._unrebuildable(exc) from exc

    def reopen(self) -> None:
        """Drop cached handles, e.g. after another process rebuilt the folder under us."""
        self._table = None
        self._db = None
        self._close_terms()

    def _close_terms(self) -> None:
        with self._terms_lock:
            if self._terms is not None:
                self._terms.close()
            self._terms, self._terms_generation = None, ""

    def _with_terms(self, use: Callable[[TermStats], T]) -> T:
        """`use(statistics)` of the build on disk, reopened when another process rebuilt it."""
        generation = str(self._read_state().get("generation", ""))
        with self._terms_lock:
            if self._terms is None or self._terms_generation != generation:
                if self._terms is not None:
                    self._terms.close()
                self._terms = None
                self._terms = TermStats.open(self.path / TERMS_FILE)
                self._terms_generation = generation
            return use(self._terms)

    def prewarm(self) -> None:
        """Load the whole full-text index into memory: otherwise each new query term pays a read."""
        try:
            table = self._table_for_query()
            if self._has_fts(table):
                table.prewarm_index("search_text_idx")
        except Exception as exc:  # a hint only; searches work without it
            log.debug("could not prewarm the full-text index: %s", exc)

    # querying ----------------------------------------------------------------------------
    def text_search(
        self, query: str, where: Filter, limit: int, expansion: Expansion | None = None
    ) -> list[tuple[str, float]]:
        """BM25 over each memory with its event context (LanceDB native full-text: lower-cased,
        stemmed, stop words removed); an `expansion` adds weighted near-synonyms and fuzzy
        matches of unknown words to the query (`mcp_memalpha.expansion`). LanceDB finds the
        candidates; their scores use the statistics of `where.namespace` alone (`terms.py`)."""
        table = self._table_for_query()
        if not self._has_fts(table):  # created with the first live row
            return []
        clauses = _clauses(query, expansion)
        rows = (
            table.search(_fts_query(clauses), query_type="fts")
            .where(where.where(), prefilter=True)
            .limit(limit)
            .select(["id", "_score"])  # _score: else LanceDB warns on every query
            .to_list()
        )
        scores = self._with_terms(lambda terms: terms.score(where.namespace, clauses, [row["id"] for row in rows]))
        return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))

    def vector_search(self, ledger: Ledger, vector: Any, where: Filter, limit: int) -> list[tuple[str, float]]:
        """Cosine similarity, exact, over the in-memory copy of the vectors (see `vectors.py`)."""
        cache = self._refresh_vectors(ledger)
        return cache.search(vector, where.namespace, where.memory_types, where.start_ts, where.end_ts, limit)

    def _refresh_vectors(self, ledger: Ledger) -> VectorCache:
        with self._vector_lock:  # the warm-up and a first search must not both load it
            return self._refresh_vectors_locked(ledger)

    def _refresh_vectors_locked(self, ledger: Ledger) -> VectorCache:
        if self._vector_cache is None:
            from mcp_memalpha.store.vectors import VectorCache  # numpy: not before the handshake

            self._vector_cache = VectorCache(self.embedder.dim)
        cache = self._vector_cache
        state = self._read_state()
        seq, generation = int(state.get("applied_seq", 0)), str(state.get("generation", ""))
        if cache.generation != generation or cache.seq < 0 or cache.seq > seq:
            cache.load(self._table_for_query(), generation, seq)
        elif cache.seq < seq:
            with ledger.read() as tx:
                changed = tx.changed_item_ids(cache.seq, seq)
                live = [row for row in tx.items(changed).values() if row.alive]
            cache.apply(changed, live, self.embedder.embed, seq)
        return cache

    def ids(self) -> set[str]:
        """Every id in the index (for verification); raises if the index cannot be read."""
        return set(self._table_for_query().to_arrow().column("id").to_pylist())

    def verify(self) -> set[str]:
        """Every id, after reading every row and running a full-text query through the scalar
        indexes: raises if any part of the index cannot be read (what the doctor checks)."""
        table = self._table_for_query()
        found = set(table.to_arrow().column("id").to_pylist())
        if found and not self._has_fts(table):
            raise RuntimeError("the full-text index is missing")
        self._with_terms(lambda terms: terms.check())
        if found:
            self.text_search("probe", Filter("default", ("episodic", "semantic"), start_ts=-1e300), 1)
        return found


def _raise_if_out_of_files(exc: BaseException) -> None:
    """A StorageError for this call when the process has run out of file descriptors: a passing
    state (idle connections, a burst of work), so the index is left as it is and the next call
    uses it again. SQLite says only "unable to open database file", hence the probe."""
    cause: BaseException | None = exc
    for _ in range(10):  # the exception and what it was raised from
        if cause is None:
            break
        if (isinstance(cause, OSError) and cause.errno in (errno.EMFILE, errno.ENFILE)) or (
            "too many open files" in str(cause).lower()
        ):
            raise _out_of_files(exc) from exc
        cause = cause.__cause__ or cause.__context__
    _refuse_without_descriptors()


def _refuse_without_descriptors() -> None:
    """Raises unless REBUILD_DESCRIPTORS more files can be opened right now."""
    opened: list[int] = []
    try:
        for _ in range(REBUILD_DESCRIPTORS):
            opened.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        raise _out_of_files(exc) from exc
    finally:
        for descriptor in opened:
            os.close(descriptor)


def _out_of_files(exc: BaseException) -> StorageError:
    return StorageError(
        f"storage: the server has run out of open files ({exc}); this call failed and nothing was "
        "changed: try again shortly (if it persists, raise the file limit, `ulimit -n`)"
    )


def _clauses(query: str, expansion: Expansion | None) -> list[Clause]:
    """The words asked for at weight 1, each extra term with its weight, the unknown words
    again fuzzily (edit distance 1 up to 5 letters, else 2)."""
    clauses = [Clause(query)]
    if expansion:
        clauses += [Clause(term, boost=weight) for term, weight in expansion.terms]
        clauses += [
            Clause(stem, boost=FUZZY_WEIGHT, fuzziness=1 if len(stem) <= 5 else 2, prefix_length=1)
            for stem in expansion.fuzzy
        ]
    return clauses


def _fts_query(clauses: Sequence[Clause]) -> Any:
    """The clauses as LanceDB matches them: any of them (OR), scores summed."""
    from lancedb.query import BooleanQuery, MatchQuery, Occur

    options: list[dict[str, Any]] = [
        {"boost": c.boost, "fuzziness": c.fuzziness, "prefix_length": c.prefix_length} for c in clauses
    ]
    matches = [MatchQuery(c.text, "search_text", **o) for c, o in zip(clauses, options, strict=True)]
    return matches[0] if len(matches) == 1 else BooleanQuery([(Occur.SHOULD, match) for match in matches])


def _search_text(item: ItemRow, previous: dict[str, str]) -> str:
    """What full-text search matches: the memory, after the one before it in its event."""
    return f"{previous[item.id]}\n{item.content}" if item.id in previous else item.content


def _touched(tx: Tx, applied: int, head: int) -> tuple[list[ItemRow], list[str], dict[str, str]]:
    """After the operations in (applied, head]: the rows to rewrite, the ids to remove, and each
    rewritten row's predecessor text.

    A memory is indexed with the one written just before it for the same event, so a change also
    rewrites the live item that follows it in its event group (same namespace, type and time).
    An item that moved to another event time, or was replaced by an import (which may change its
    creation time, hence its place), has its whole old and new groups rewritten instead.
    """
    changed = tx.changed_item_ids(applied, head) if head > applied else []
    rows = tx.items(changed)
    dead = [item_id for item_id in changed if item_id not in rows or not rows[item_id].alive]
    write = {row.id: row for row in rows.values() if row.alive}
    whole: set[tuple[str, str, float | None]] = set()
    imported = tx.imported_item_ids(applied, head)
    for item_id, before in tx.states_before(changed, applied).items():
        row = rows.get(item_id)
        old = (before.namespace, before.memory_type, from_stored(before.event_time).ts if before.event_time else None)
        if row is not None and (old != (row.namespace, row.memory_type, row.event_ts) or item_id in imported):
            whole |= {key for key in (old, (row.namespace, row.memory_type, row.event_ts)) if key[2] is not None}
    for row in rows.values():
        if row.id in imported and row.event_ts is not None:
            whole.add((row.namespace, row.memory_type, row.event_ts))
    groups = {(r.namespace, r.memory_type, r.event_ts) for r in rows.values() if r.event_ts is not None} | whole
    previous: dict[str, str] = {}
    for namespace, memory_type, event_ts in groups:
        if event_ts is None:  # no event time, no group
            continue
        group = tx.event_group(namespace, memory_type, event_ts)
        if (namespace, memory_type, event_ts) in whole:
            write.update((member.id, member) for member in group)
        else:
            keys = [(member.created_at, member.id) for member in group]
            for row in rows.values():
                if (row.namespace, row.memory_type, row.event_ts) == (namespace, memory_type, event_ts):
                    following = bisect.bisect_right(keys, (row.created_at, row.id))
                    if following < len(group):
                        write[group[following].id] = group[following]
        for before_row, row in itertools.pairwise(group):
            if row.id in write:
                previous[row.id] = before_row.content
    return list(write.values()), dead, previous


def _previous_in_event(items: Sequence[ItemRow]) -> dict[str, str]:
    """For each item, the content of the item written just before it for the same event.

    Parts of one event (turns of one conversation session, steps of one episode) share an event
    time; a fragment such as "Yes, last Saturday!" is only findable with what came before it.
    """
    ordered = sorted(
        (i for i in items if i.event_ts is not None),
        key=lambda i: (i.namespace, i.memory_type, i.event_ts, i.created_at, i.id),
    )
    previous: dict[str, str] = {}
    for before, item in itertools.pairwise(ordered):
        if (before.namespace, before.memory_type, before.event_ts) == (item.namespace, item.memory_type, item.event_ts):
            previous[item.id] = before.content
    return previous
