"""The memory service: the operations behind every tool, over the ledger and the index.

Pure Python and synchronous: the MCP server runs it on worker threads, the curator and the
training rollouts call it directly. Every write is one ledger transaction; the search index is
caught up from the ledger before each search (and in the background by the server), and search
hits are re-read from the ledger, so a deleted or stale item is never returned.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, get_args

from mcp_memalpha import ids
from mcp_memalpha.clock import Clock, local_now, system_clock
from mcp_memalpha.compaction import Compaction, compact
from mcp_memalpha.context import CallContext, clean_text, now_iso
from mcp_memalpha.embedding import Embedder
from mcp_memalpha.errors import (
    CapacityExceeded,
    InvalidArgument,
    NamespaceFull,
    NotFound,
    VersionConflict,
)
from mcp_memalpha.excerpt import excerpts, rank_budgets, render_hit
from mcp_memalpha.expansion import expand
from mcp_memalpha.match import MatchLevel, match_level, match_scores
from mcp_memalpha.query import query_parts
from mcp_memalpha.ranking import VECTOR_POOL, VECTOR_WEIGHT, by_score, fuse_parts, hybrid_fusion
from mcp_memalpha.rerank import rerank
from mcp_memalpha.settings import Settings
from mcp_memalpha.store import ledger_for
from mcp_memalpha.store.index import Filter, SearchIndex
from mcp_memalpha.store.ledger import CoreRow, IdTaken, ItemRow, OpRow, Tx
from mcp_memalpha.timeparse import EventTime
from mcp_memalpha.timewords import Span, find_in_query, read_when
from mcp_memalpha.tokens import TOKENIZER_NAME, count_many, count_tokens
from mcp_memalpha.vocabulary import (
    ITEM_TYPES,
    SOURCES,
    ItemType,
    MemoryType,
    Order,
    SearchMethod,
    Source,
    memory_type_name,
    search_method_name,
)

# Some are re-exported from their homes (context, excerpt, ranking, vocabulary), for the callers
# that import them from here.
__all__ = [
    "ITEM_TYPES",
    "MAX_TOP_K",
    "SOURCES",
    "VECTOR_POOL",
    "VECTOR_WEIGHT",
    "CallContext",
    "Hit",
    "ItemType",
    "Memory",
    "MemoryType",
    "Order",
    "Page",
    "SearchMethod",
    "SearchOutcome",
    "Source",
    "clean_text",
    "fuse_parts",
    "hybrid_fusion",
    "normalize_memory_type",
    "now_iso",
    "render_hit",
]

log = logging.getLogger(__name__)

MAX_TOP_K = 100  # most results, ids or page items one call may ask for
# Cosines of the embedded model's vectors: from SIMILAR_COSINE an insert reports an existing memory
# as saying nearly the same ("update instead?"); from DUPLICATE_COSINE on_duplicate='skip' skips.
SIMILAR_COSINE = 0.8
DUPLICATE_COSINE = 0.95
FRESH_LIMIT = 500  # most not-yet-indexed memories an insert compares itself with


@dataclass(frozen=True)
class Hit:
    item: ItemRow
    score: float
    text: str  # as a reader sees it (render_hit)
    tokens: int
    excerpt: bool  # text shows only the content's sentences most relevant to the query
    match: float = 0.0  # how well it answers the query, comparable across queries (`match.match_score`)


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    total_tokens: int
    truncated: bool
    start: Span | None = None  # how start_time was read
    end: Span | None = None  # how end_time was read
    prior: Span | None = None  # the time the query speaks of: its memories were ranked higher
    best_match: float | None = None  # the best hit's match score (before min_score), None without hits
    dropped: int = 0  # hits left out for a match score under min_score

    @property
    def match(self) -> MatchLevel:
        return match_level(self.best_match)


@dataclass(frozen=True)
class InsertOutcome:
    item: ItemRow  # the new memory, or with `skipped` the existing one it duplicates
    similar: list[tuple[ItemRow, float]]  # live memories saying nearly the same, with their cosine
    skipped: bool = False


@dataclass(frozen=True)
class Page:
    items: list[ItemRow]
    next_cursor: str | None
    total: int


def normalize_memory_type(raw: str, allowed: tuple[str, ...], field: str = "memory_type") -> str:
    """Accept `episodic`, `episodic_memory`, any case (`vocabulary.memory_type_name`); reject
    anything not in `allowed`. The tools' argument models have already done so for a tool call:
    this guards the direct callers (transfer, training, tests)."""
    value = memory_type_name(raw)
    if value not in allowed:
        names = ", ".join(f"'{a}'" for a in allowed)
        if value == "core" and "core" not in allowed:
            raise InvalidArgument(
                field,
                "core memory cannot be inserted or searched; replace it with memory_update(memory_type='core')",
            )
        raise InvalidArgument(field, f"{raw!r} is not one of {names} (the '_memory' suffix is optional)")
    return value


# WordPiece counts any word of over 100 characters as one [UNK], so tokens alone do not bound a
# core's size; English prose averages 4 to 5 characters per token, so this never binds on prose.
CORE_MAX_CHARS_PER_TOKEN = 8


def check_core_size(text: str, limit_tokens: int, field: str) -> None:
    """Refuse a core paragraph over `limit_tokens` tokens, or over 8 characters per token of it."""
    hint = (
        f"core memory holds one short paragraph (counted with the {TOKENIZER_NAME} tokenizer): "
        "shorten it and move details to semantic or episodic memory"
    )
    max_chars = limit_tokens * CORE_MAX_CHARS_PER_TOKEN
    if len(text) > max_chars:  # checked first: a huge text is refused without tokenizing it
        raise CapacityExceeded(field, len(text), max_chars, "characters", hint)
    size = count_tokens(text)
    if size > limit_tokens:
        raise CapacityExceeded(field, size, limit_tokens, "tokens", hint)


class Memory:
    """Open with `Memory(settings).open()` (or as a context manager); thread-safe."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or system_clock
        self.zone = settings.zone
        self.ledger = ledger_for(settings)
        self.embedder = embedder or Embedder()
        self.index = SearchIndex(settings.index_path, self.embedder)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memalpha-search")
        # Embeddings of the memories this process inserted, by id and content, so the duplicate
        # check does not embed the not-yet-indexed ones again on every insert (bounded: FRESH_LIMIT).
        self._fresh_vectors: dict[tuple[str, str], Any] = {}

    def open(self) -> Memory:
        self.ledger.open()
        return self

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.ledger.close()

    def __enter__(self) -> Memory:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writing -----------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Tx]:
        """A ledger write; a write that takes the log past a multiple of `compact_every`
        operations then has it compacted in the background (in whichever process made it)."""
        with self.ledger.write() as tx:
            yield tx
        every = self.settings.compact_every
        if every and tx.logged and max(tx.logged) // every > (min(tx.logged) - 1) // every:
            self._pool.submit(self._compact_in_background)  # the caller's write is done: don't make it wait

    def _compact_in_background(self) -> None:
        try:
            log.info("compacted: %s", self.compact().render().replace("\n", "; "))
        except Exception as exc:  # nothing is lost: the next crossing tries again
            log.warning("automatic compaction failed: %s", exc)

    def compact(self, history_versions: int | None = None, undo_days: float | None = None) -> Compaction:
        """Compact the operation log and the job table (see `mcp_memalpha.compaction`); arguments
        left out come from the settings."""
        versions = self.settings.history_versions if history_versions is None else history_versions
        days = self.settings.undo_days if undo_days is None else undo_days
        with self.index.held(self.ledger) as applied:
            return compact(self.ledger, versions, days, applied)

    # validation --------------------------------------------------------------------------
    def _content(self, value: str, field: str) -> str:
        text = clean_text(value, field, "is empty; write the memory as a non-empty sentence")
        limit = self.settings.max_content_chars
        if len(text) > limit:
            raise CapacityExceeded(field, len(text), limit, "characters", "split it into several memories")
        return text

    def check_room(self, tx: Tx, namespace: str, field: str, adding: int = 1) -> None:
        """Refuse a write that would take the namespace past `max_items_per_namespace` live items."""
        limit = self.settings.max_items_per_namespace
        if limit is not None and (count := tx.count_live(namespace) + adding) > limit:
            raise NamespaceFull(field, namespace, count, limit)

    def now_local(self) -> datetime:
        """Now, as wall-clock time in the user's zone: what times in words are read against."""
        return local_now(self.clock, self.zone)

    def _time(self, timestamp: str | None) -> EventTime | None:
        return None if timestamp is None else read_when(timestamp, "timestamp", self.now_local()).at

    @staticmethod
    def _version(expected: int | None) -> None:
        if expected is not None and expected < 0:
            raise InvalidArgument("expected_version", f"{expected} is negative; versions start at 1")

    def _item(self, tx: Tx, ctx: CallContext, memory_type: str, raw_id: str | None) -> ItemRow:
        """The item `raw_id` names in this namespace, live or deleted, checked against its type."""
        if raw_id is None or not str(raw_id).strip():
            raise InvalidArgument("memory_id", f"is required for {memory_type} memory; find ids with search_memory")
        memory_id = ids.normalize_id(str(raw_id))
        if not ids.is_valid_id(memory_id):
            raise InvalidArgument(
                "memory_id", f"{raw_id!r} is not a memory id (ids look like 'e-7kq2mx' or 's-3pd9aa')"
            )
        item = tx.item(memory_id)
        if item is None or item.namespace != ctx.namespace:
            raise NotFound(memory_id, memory_type, ctx.namespace)
        if item.memory_type != memory_type:
            raise InvalidArgument(
                "memory_type",
                f"memory '{memory_id}' is {item.memory_type} memory, not {memory_type}; pass "
                f"memory_type='{item.memory_type}'",
            )
        return item

    def _live_item(self, tx: Tx, ctx: CallContext, memory_type: str, raw_id: str | None) -> ItemRow:
        item = self._item(tx, ctx, memory_type, raw_id)
        if not item.alive:
            raise NotFound(item.id, memory_type, ctx.namespace, f" (it was deleted at {item.deleted_at})")
        return item

    @staticmethod
    def _next_version(
        tx: Tx, ctx: CallContext, current: ItemRow, expected_version: int | None, op: str, now: str, **changes: Any
    ) -> ItemRow:
        """Write `current` with `changes` as its next version at `now` (refused if `expected_version` is stale)."""
        if expected_version is not None and expected_version != current.version:
            raise VersionConflict(f"memory '{current.id}'", expected_version, current.version, current.content)
        item = replace(
            current, **changes, updated_at=now, version=current.version + 1, source=ctx.source, job_id=ctx.job_id
        )
        tx.save_item(item)
        tx.log(op, item, now)
        return item

    # item writes -------------------------------------------------------------------------
    def insert_checked(
        self,
        ctx: CallContext,
        memory_type: ItemType,
        content: str,
        timestamp: str | None = None,
        on_duplicate: Literal["insert", "skip"] = "insert",
    ) -> InsertOutcome:
        """Insert, first finding the live memories of the same type that say nearly the same
        (`similar`, never merged); with on_duplicate='skip', an exact or near duplicate
        (cosine >= DUPLICATE_COSINE) is not inserted and the existing memory is returned."""
        kind = normalize_memory_type(memory_type, ITEM_TYPES)
        similar = self.similar(ctx, kind, self._content(content, "content"))
        if on_duplicate == "skip" and similar and similar[0][1] >= DUPLICATE_COSINE:
            return InsertOutcome(similar[0][0], similar, skipped=True)
        item = self.insert(ctx, memory_type, content, timestamp)
        if len(self._fresh_vectors) >= FRESH_LIMIT:
            self._fresh_vectors.pop(next(iter(self._fresh_vectors)))  # the oldest
        self._fresh_vectors[(item.id, item.content)] = self.embedder.embed([item.content])[0]
        return InsertOutcome(item, similar)

    def similar(self, ctx: CallContext, kind: str, text: str, limit: int = 3) -> list[tuple[ItemRow, float]]:
        """Live memories of `kind` whose embedding is within SIMILAR_COSINE of `text`, closest
        first: the indexed ones from the vector cache, plus those written since the index last
        caught up (read from the ledger), so a duplicate written a moment ago is seen too."""
        vector = self.embedder.embed([text])[0]
        state = self.index._read_state()  # the index has no public getter for it
        built = self.index.generation() is not None  # a complete build exists to read from
        near = self.index.vector_search(self.ledger, vector, Filter(ctx.namespace, (kind,)), limit) if built else []
        applied = int(state.get("applied_seq", 0)) if built else 0
        with self.ledger.read() as tx:
            fresh = tx.changed_item_ids(applied, tx.head())[-FRESH_LIMIT:]  # newest; no index yet: all of them
            rows = tx.items([item_id for item_id, _ in near] + fresh)
        candidates = [row for row in rows.values() if row.alive and row.namespace == ctx.namespace]
        candidates = [row for row in candidates if row.memory_type == kind]
        if not candidates:
            return []
        known = [self._fresh_vectors.get((row.id, row.content)) for row in candidates]
        missing = [row.content for row, v in zip(candidates, known, strict=True) if v is None]
        embedded = iter(self.embedder.embed(missing)) if missing else iter(())
        vectors = [v if v is not None else next(embedded) for v in known]
        scored = [
            (row, 1.0 if row.content == text else round(float(v @ vector), 4))
            for row, v in zip(candidates, vectors, strict=True)
        ]
        scored = [pair for pair in scored if pair[1] >= SIMILAR_COSINE]
        return sorted(scored, key=lambda pair: (-pair[1], pair[0].id))[:limit]

    def insert(self, ctx: CallContext, memory_type: ItemType, content: str, timestamp: str | None = None) -> ItemRow:
        kind = normalize_memory_type(memory_type, ITEM_TYPES)
        text = self._content(content, "content")
        when = self._time(timestamp)
        now = now_iso()
        attempts = 0
        with self._write() as tx:
            self.check_room(tx, ctx.namespace, "content")
            while True:
                item = ItemRow(
                    id=ids.new_id(kind),
                    namespace=ctx.namespace,
                    memory_type=kind,
                    content=text,
                    event_time=when.iso if when else None,
                    event_ts=when.ts if when else None,
                    created_at=now,
                    updated_at=now,
                    version=1,
                    source=ctx.source,
                    job_id=ctx.job_id,
                    deleted_at=None,
                )
                try:
                    tx.insert_item(item)
                    break
                except IdTaken:  # the id was taken: draw another
                    attempts += 1
                    if attempts >= 20:
                        raise
            tx.log("insert", item, now)
        return item

    def update(
        self,
        ctx: CallContext,
        memory_type: ItemType,
        memory_id: str | None,
        new_content: str,
        timestamp: str | None = None,
        expected_version: int | None = None,
    ) -> ItemRow:
        kind = normalize_memory_type(memory_type, ITEM_TYPES)
        text = self._content(new_content, "new_content")
        when = self._time(timestamp)
        self._version(expected_version)
        with self._write() as tx:
            current = self._live_item(tx, ctx, kind, memory_id)
            return self._next_version(
                tx,
                ctx,
                current,
                expected_version,
                "update",
                now_iso(),
                content=text,
                event_time=when.iso if when else current.event_time,
                event_ts=when.ts if when else current.event_ts,
            )

    def delete(
        self, ctx: CallContext, memory_type: ItemType, memory_id: str | None, expected_version: int | None = None
    ) -> ItemRow:
        """Delete an item (a tombstone stays, so its id is never reused and history is kept)."""
        kind = normalize_memory_type(memory_type, ITEM_TYPES)
        self._version(expected_version)
        with self._write() as tx:
            current = self._live_item(tx, ctx, kind, memory_id)
            now = now_iso()
            return self._next_version(tx, ctx, current, expected_version, "delete", now, deleted_at=now)

    def restore(
        self, ctx: CallContext, memory_type: ItemType, memory_id: str | None, expected_version: int | None = None
    ) -> ItemRow:
        """Bring a deleted item back, as a new version with the content it had when deleted."""
        kind = normalize_memory_type(memory_type, ITEM_TYPES)
        self._version(expected_version)
        with self._write() as tx:
            current = self._item(tx, ctx, kind, memory_id)
            if current.alive:
                raise InvalidArgument("memory_id", f"memory '{current.id}' is not deleted; nothing to restore")
            self.check_room(tx, ctx.namespace, "memory_id")
            return self._next_version(tx, ctx, current, expected_version, "restore", now_iso(), deleted_at=None)

    # core --------------------------------------------------------------------------------
    def core(self, ctx: CallContext) -> CoreRow:
        with self.ledger.read() as tx:
            return tx.core(ctx.namespace)

    def set_core(self, ctx: CallContext, new_content: str, expected_version: int | None = None) -> CoreRow:
        """Replace the core paragraph; refused (not truncated) when over capacity."""
        empty = "is empty; to clear core memory use memory_delete(memory_type='core')"
        text = clean_text(new_content, "new_content", empty)
        check_core_size(text, self.settings.core_capacity_tokens, "new_content")
        return self._write_core(ctx, text, expected_version, "core_update")

    def clear_core(self, ctx: CallContext, expected_version: int | None = None) -> CoreRow:
        return self._write_core(ctx, "", expected_version, "core_delete")

    def _write_core(self, ctx: CallContext, text: str, expected_version: int | None, op: str) -> CoreRow:
        self._version(expected_version)
        now = now_iso()
        with self._write() as tx:
            current = tx.core(ctx.namespace)
            if expected_version is not None and expected_version != current.version:
                raise VersionConflict("core memory", expected_version, current.version, current.content)
            core = CoreRow(ctx.namespace, text, current.version + 1, now, ctx.source, ctx.job_id)
            tx.save_core(core)
            tx.log(op, core, now)
        return core

    # reads -------------------------------------------------------------------------------
    def get(self, ctx: CallContext, memory_ids: list[str]) -> tuple[list[ItemRow], list[str]]:
        """Live items with these ids, in the order asked, and the ids that matched nothing."""
        if len(memory_ids) > MAX_TOP_K:
            raise InvalidArgument("memory_ids", f"has {len(memory_ids)} ids; ask for at most {MAX_TOP_K}")
        wanted = [ids.normalize_id(str(raw)) for raw in memory_ids]
        with self.ledger.read() as tx:
            found = tx.items(i for i in wanted if ids.is_valid_id(i))
        items, missing = [], []
        for raw, memory_id in zip(memory_ids, wanted, strict=True):
            item = found.get(memory_id)
            if item is not None and item.alive and item.namespace == ctx.namespace:
                items.append(item)
            else:
                missing.append(raw)
        return items, missing

    def list_items(
        self,
        ctx: CallContext,
        memory_type: ItemType,
        limit: int = 20,
        cursor: str | None = None,
        newest_first: bool = False,
        deleted: bool = False,
    ) -> Page:
        """A page of live (or, with `deleted`, deleted) items in time order (event time, else creation time)."""
        kind = normalize_memory_type(memory_type, ITEM_TYPES)
        if not 1 <= limit <= MAX_TOP_K:
            raise InvalidArgument("limit", f"{limit} is out of range; use 1 to {MAX_TOP_K}")
        after = _decode_cursor(cursor) if cursor else None
        with self.ledger.read() as tx:
            rows = tx.list_items(ctx.namespace, kind, after, limit + 1, newest_first, deleted)
            total = tx.count_items(ctx.namespace, kind, deleted)
        page = rows[:limit]
        next_cursor = _encode_cursor(*page[-1]) if len(rows) > limit else None
        return Page([item for item, _ in page], next_cursor, total)

    def history(self, ctx: CallContext, memory_id: str) -> list[OpRow]:
        """Every logged version of an item, oldest first (deleted items included)."""
        memory_id = ids.normalize_id(str(memory_id))
        if not ids.is_valid_id(memory_id):
            raise InvalidArgument("memory_id", f"{memory_id!r} is not a memory id (ids look like 'e-7kq2mx')")
        with self.ledger.read() as tx:
            item = tx.item(memory_id)
            if item is None or item.namespace != ctx.namespace:
                raise NotFound(memory_id, "episodic or semantic", ctx.namespace)
            return tx.history(memory_id)

    # search ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load everything a search needs and catch the index up, so the first search is quick.

        The embedding model loads on a second thread while LanceDB imports; one query per
        method then pulls the full-text index and the vectors into memory.
        """
        started = time.perf_counter()
        model = self._pool.submit(self.embedder.embed, ["warm-up"])
        self.sync_index()
        log.debug("warm-up: index synced after %.2f s", time.perf_counter() - started)
        model.result()
        log.debug("warm-up: model loaded after %.2f s", time.perf_counter() - started)
        self.index.prewarm()
        self.search(CallContext(), "warm-up", top_k=1)
        log.info("warm-up: ready to search after %.2f s", time.perf_counter() - started)

    def sync_index(self) -> int:
        """Bring the search index up to the ledger; returns the number of items it rewrote.

        An index that fails to sync (damaged or missing files) is rebuilt from the ledger, which
        holds everything in it (`SearchIndex.sync_or_rebuild`)."""
        return self.index.sync_or_rebuild(self.ledger)

    def search(
        self,
        ctx: CallContext,
        query: str,
        memory_types: list[ItemType] | None = None,
        method: SearchMethod = "hybrid",
        top_k: int = 10,
        start_time: str | None = None,
        end_time: str | None = None,
        order: Order = "relevance",
        max_tokens: int | None = None,
        excerpt_tokens: int | None = None,
        min_score: float | None = None,
    ) -> SearchOutcome:
        """Ranked hits; `excerpt_tokens` (default: the setting, 0 = whole) bounds each hit's text
        (twice it for the first LEAD_HITS, see `excerpt.rank_budgets`);
        `min_score` leaves out hits whose match score (0 to 1, see `match`) is below it."""
        text = self._query(query)
        kinds = tuple(normalize_memory_type(t, ITEM_TYPES) for t in (memory_types or ITEM_TYPES))
        method = _search_method(method)
        if order not in ("relevance", "chronological"):
            raise InvalidArgument("order", f"{order!r} is not 'relevance' or 'chronological'")
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidArgument("top_k", f"{top_k} is out of range; use 1 to {MAX_TOP_K}")
        if max_tokens is not None and max_tokens < 1:
            raise InvalidArgument("max_tokens", f"{max_tokens} must be at least 1")
        if excerpt_tokens is None:
            excerpt_tokens = self.settings.search_excerpt_tokens
        if excerpt_tokens < 0:
            raise InvalidArgument("excerpt_tokens", f"{excerpt_tokens} must be 0 (whole texts) or more")
        if min_score is not None and not 0 <= min_score <= 1:
            raise InvalidArgument("min_score", f"{min_score} is out of range; match scores run from 0 to 1")
        now = self.now_local()
        start, end = _time_range(start_time, end_time, now)
        where = Filter(ctx.namespace, kinds, start.start.ts if start else None, end.end.ts if end else None)
        prior = _query_time(text, now, where)

        if self.index.is_behind(self.ledger):
            self.sync_index()
        ranked = self._rank(text, where, method, top_k, prior)
        head = self._hydrate(ctx, ranked, kinds, HEAD * top_k)
        reranked = rerank(text, [(item.content, score) for item, score in head])
        hits_items = [(head[index][0], score) for index, score in reranked[:top_k]]
        shown = self._excerpts([item.content for item, _ in hits_items], text, excerpt_tokens)
        texts = [render_hit(item, part) for (item, _), part in zip(hits_items, shown, strict=True)]
        sizes = count_many(texts) if texts else []
        matches = self._matches(text, [item for item, _ in hits_items], prior)
        hits = [
            Hit(item, score, text, size, part is not None, good)
            for (item, score), text, size, part, good in zip(hits_items, texts, sizes, shown, matches, strict=True)
        ]
        best = max(matches, default=None)
        kept = [hit for hit in hits if min_score is None or hit.match >= min_score]
        dropped = len(hits) - len(kept)
        kept, truncated = _pack(kept, max_tokens)
        if order == "chronological":
            kept.sort(key=lambda h: (_sort_time(h.item), h.item.created_at, h.item.id))
        return SearchOutcome(kept, sum(h.tokens for h in kept), truncated, start, end, prior, best, dropped)

    def _matches(self, query: str, items: list[ItemRow], prior: Span | None) -> list[float]:
        """Each item's match score against the query, on its content (not the date it is shown
        with) and, when the query names a time, on whether the item is of that time."""
        inside = None
        if prior is not None:
            inside = [item.event_ts is not None and prior.start.ts <= item.event_ts <= prior.end.ts for item in items]
        return match_scores(query, [item.content for item in items], self.embedder.embed, inside)

    def _hydrate(
        self, ctx: CallContext, ranked: list[tuple[str, float]], kinds: tuple[str, ...], wanted: int
    ) -> list[tuple[ItemRow, float]]:
        """The first `wanted` ranked ids that are live in the ledger, read from it, with their scores.

        Reads the head of the ranking first and more only if the index returned items the
        ledger has since deleted, so a search reads about `wanted` rows, not the whole pool.
        """
        found: list[tuple[ItemRow, float]] = []
        start, step = 0, wanted
        while len(found) < wanted and start < len(ranked):
            chunk = ranked[start : start + step]
            with self.ledger.read() as tx:
                rows = tx.items(item_id for item_id, _ in chunk)
            for item_id, score in chunk:
                row = rows.get(item_id)
                if row is not None and row.alive and row.namespace == ctx.namespace and row.memory_type in kinds:
                    found.append((row, score))
            start, step = start + step, 4 * step
        return found[:wanted]

    def _excerpts(self, contents: list[str], query: str, budget: int) -> list[str | None]:
        if not budget:
            return [None] * len(contents)

        def similarity(sentences: list[str]) -> Any:
            vectors = self.embedder.embed([query, *sentences])
            return vectors[1:] @ vectors[0]

        return excerpts(contents, query, rank_budgets(len(contents), budget), similarity)

    def _query(self, query: str) -> str:
        query = clean_text(query, "query", "is empty; say what to look for")
        if len(query) > self.settings.max_query_chars:
            raise CapacityExceeded(
                "query", len(query), self.settings.max_query_chars, "characters", "ask a shorter question"
            )
        return query.strip()

    def _rank(
        self, query: str, where: Filter, method: str, top_k: int, prior: Span | None = None
    ) -> list[tuple[str, float]]:
        """Ranked (id, score) candidates from one complete build of the index, recovering from a
        failed query or a concurrent rebuild as `SearchIndex.consistent` does. With a `prior`
        (the time the query speaks of), the memories of that time are ranked again on their own
        and lead (`prefer_range`); the rest follow."""
        # Extra candidates: some may be filtered out as deleted since the index last synced.
        pool = max(top_k * 3, 50)

        def rank() -> list[tuple[str, float]]:
            ranked = self._rank_once(query, where, method, pool)
            if prior is None:
                return ranked
            inside = replace(
                where,
                start_ts=max(prior.start.ts, where.start_ts if where.start_ts is not None else -math.inf),
                end_ts=min(prior.end.ts, where.end_ts if where.end_ts is not None else math.inf),
            )
            return prefer_range(ranked, self._rank_once(query, inside, method, pool))

        return self.index.consistent(self.ledger, rank)

    def _rank_once(self, query: str, where: Filter, method: str, pool: int) -> list[tuple[str, float]]:
        parts = query_parts(query)
        if len(parts) == 1:
            return self._rank_part(query, where, method, pool)
        return fuse_parts([self._rank_part(part, where, method, pool) for part in parts])

    def _rank_part(self, query: str, where: Filter, method: str, pool: int) -> list[tuple[str, float]]:
        if method == "vector":
            return by_score(self.index.vector_search(self.ledger, self.embedder.embed([query])[0], where, pool))
        # The full-text half also matches near-synonyms and misspellings (`expansion`).
        wider = expand(query, self.embedder.synonyms())
        if method == "bm25":
            return by_score(self.index.text_search(query, where, pool, wider))
        # Both halves release the GIL (LanceDB's Rust, numpy's BLAS): run them side by side.
        text = self._pool.submit(self.index.text_search, query, where, pool, wider)
        embedding = self.embedder.embed([query])[0]
        vector = self.index.vector_search(self.ledger, embedding, where, max(pool, VECTOR_POOL))
        return hybrid_fusion(text.result(), vector)

    # export / import support -------------------------------------------------------------
    def iter_items(self, namespace: str | None, include_deleted: bool = False) -> Iterator[ItemRow]:
        with self.ledger.read() as tx:
            yield from tx.all_items(namespace, include_deleted)

    def cores(self, namespace: str | None) -> list[CoreRow]:
        with self.ledger.read() as tx:
            return tx.all_cores(namespace)


def _search_method(method: str) -> SearchMethod:
    value = search_method_name(method or "")  # None or '' is the default
    if value not in get_args(SearchMethod):
        raise InvalidArgument(
            "search_method",
            f"{method!r} is not 'hybrid', 'bm25' or 'vector' ('text-embedding' means 'vector')",
        )
    return value


def _time_range(start_time: str | None, end_time: str | None, now: datetime) -> tuple[Span | None, Span | None]:
    """How start_time and end_time read: a range's start for the start ("last week": its Monday),
    its end for the end (a bare date: the end of that day)."""
    start = read_when(start_time, "start_time", now) if start_time else None
    end = read_when(end_time, "end_time", now) if end_time else None
    if start is not None and end is not None and start.start.ts > end.end.ts:
        raise InvalidArgument("end_time", f"{end_time!r} is before start_time {start_time!r}")
    return start, end


# The head of a ranking read from the ledger and re-ranked by what its memories say (`rerank`):
# this many times top_k, so a memory the priors lift can come from just below the cut.
HEAD = 2

# How much a memory of the time a query speaks of is lifted, on the hybrid scale (about 1 at the
# top): one that matches half as well as the best leads, one that barely matches does not.
TIME_PRIOR = 0.5


def _query_time(query: str, now: datetime, where: Filter) -> Span | None:
    """The range the query speaks of, when it is one (not an instant) that overlaps the filter."""
    span = find_in_query(query, now)
    if span is None or span.start.ts == span.end.ts:
        return None
    if (where.end_ts is not None and span.start.ts > where.end_ts) or (
        where.start_ts is not None and span.end.ts < where.start_ts
    ):
        return None
    return span


def prefer_range(ranked: list[tuple[str, float]], inside: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """A prior, not a filter: each memory of the query's time (`inside`, found by a search of that
    range alone) gets TIME_PRIOR on top of its score in the whole ranking (one that ranked only
    in its range, the lowest score of the whole ranking); every other memory keeps its score."""
    scores = dict(ranked)
    floor = min(scores.values(), default=0.0)
    for item_id, score in inside:
        scores[item_id] = scores.get(item_id, min(score, floor)) + TIME_PRIOR
    return by_score(list(scores.items()))


def _sort_time(item: ItemRow) -> float:
    if item.event_ts is not None:
        return item.event_ts
    return datetime.fromisoformat(item.created_at.replace("Z", "+00:00")).timestamp()


def _pack(hits: list[Hit], max_tokens: int | None) -> tuple[list[Hit], bool]:
    """Keep hits in rank order while they fit the budget; skip (and report) those that do not."""
    if max_tokens is None:
        return hits, False
    kept, used = [], 0
    for hit in hits:
        if used + hit.tokens <= max_tokens:
            kept.append(hit)
            used += hit.tokens
    return kept, len(kept) < len(hits)


def _encode_cursor(item: ItemRow, key: float) -> str:
    return f"{key!r}|{item.created_at}|{item.id}"


def _decode_cursor(cursor: str) -> tuple[float, str, str]:
    try:
        key, created_at, item_id = cursor.split("|", 2)
        if not math.isfinite(float(key)):
            raise ValueError(key)
        return float(key), created_at, item_id
    except ValueError:
        raise InvalidArgument("cursor", f"{cursor!r} is not a cursor returned by memory_list") from None
