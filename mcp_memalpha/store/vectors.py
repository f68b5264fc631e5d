"""Exact vector search over an in-memory copy of the index's vectors.

LanceDB keeps the vectors on disk, but its brute-force scan costs ~45 ms at 100k items on two
cores, where one numpy matrix product costs a few. So each process holds the vectors in a
preallocated matrix, loaded once from LanceDB and then kept current from the ledger, like the
index itself: it records the ledger sequence number it reflects and re-embeds only the items
changed since (the static embedder makes that cheap).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from mcp_memalpha.store.ledger import ItemRow

_TYPES = {"episodic": 0, "semantic": 1}
# Free rows kept past the loaded ones, and added by a quarter more when they run out: the matrix
# is most of the cache's memory (1 KB a memory), so it grows in steps, not by doubling.
HEADROOM = 1024


class VectorCache:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.generation: str | None = None  # of the index it was loaded from
        self.seq = -1
        self._lock = threading.Lock()
        self._clear(1024)

    def _clear(self, capacity: int) -> None:
        self._vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        self._namespace = np.zeros(capacity, dtype=np.int32)
        self._type = np.zeros(capacity, dtype=np.int8)
        self._ts = np.full(capacity, np.nan)
        self._alive = np.zeros(capacity, dtype=bool)
        self._ids: list[str | None] = [None] * capacity
        self._slot: dict[str, int] = {}
        self._namespaces: dict[str, int] = {}
        self._used = 0

    # keeping current -----------------------------------------------------------------------
    def load(self, table: Any, generation: str, seq: int) -> None:
        """Replace everything with the rows of a LanceDB table that reflects ledger `seq`.

        Reads only the columns it keeps, in batches, straight into the preallocated arrays, so
        loading 100k vectors takes a fraction of a second and no full copy of the table.
        """
        count = table.count_rows()
        columns = ["id", "namespace", "memory_type", "event_ts", "vector"]
        batches = table.search().select(columns).limit(max(count, 1)).to_batches(10_000)
        with self._lock:
            self._clear(count + HEADROOM)
            for batch in batches:
                self._append_batch(batch)
            self.generation, self.seq = generation, seq

    def _append_batch(self, batch: Any) -> None:
        size = batch.num_rows
        while self._used + size > len(self._ids):
            self._grow()
        import pyarrow.compute as pc

        ids = batch.column("id").to_pylist()
        rows = slice(self._used, self._used + size)
        self._vectors[rows] = batch.column("vector").values.to_numpy(zero_copy_only=False).reshape(size, self.dim)
        # Namespaces are few: encode once per distinct value, not once per row.
        encoded = batch.column("namespace").dictionary_encode()
        codes = [self._namespaces.setdefault(ns, len(self._namespaces)) for ns in encoded.dictionary.to_pylist()]
        self._namespace[rows] = np.asarray(codes, dtype=np.int32)[encoded.indices.to_numpy(zero_copy_only=False)]
        semantic = pc.equal(batch.column("memory_type"), "semantic").to_numpy(zero_copy_only=False)
        self._type[rows] = semantic.astype(np.int8) * _TYPES["semantic"]
        self._ts[rows] = batch.column("event_ts").to_numpy(zero_copy_only=False)
        self._alive[rows] = True
        self._ids[rows] = ids
        self._slot.update(zip(ids, range(self._used, self._used + size), strict=True))
        self._used += size

    def apply(self, changed: Iterable[str], live: list[ItemRow], embed: Callable[[list[str]], Any], seq: int) -> None:
        """Bring the cache to ledger `seq`: drop every changed id, re-add the live ones."""
        vectors = embed([row.content for row in live]) if live else []
        with self._lock:
            for item_id in changed:
                slot = self._slot.pop(item_id, None)
                if slot is not None:
                    self._alive[slot] = False
            for row, vector in zip(live, vectors, strict=True):
                self._put(row.id, row.namespace, row.memory_type, row.event_ts, vector)
            self.seq = seq
            if self._used > 1024 and len(self._slot) < self._used // 2:
                self._compact()

    def _put(self, item_id: str, namespace: str, memory_type: str, event_ts: float | None, vector: Any) -> None:
        slot = self._slot.get(item_id)
        if slot is None:
            if self._used == len(self._ids):
                self._grow()
            slot = self._used
            self._used += 1
            self._slot[item_id] = slot
        self._vectors[slot] = vector
        self._namespace[slot] = self._namespaces.setdefault(namespace, len(self._namespaces))
        self._type[slot] = _TYPES[memory_type]
        self._ts[slot] = np.nan if event_ts is None else event_ts
        self._alive[slot] = True
        self._ids[slot] = item_id

    def _grow(self) -> None:
        capacity = len(self._ids) + len(self._ids) // 4 + HEADROOM
        self._vectors = np.resize(self._vectors, (capacity, self.dim))
        self._namespace = np.resize(self._namespace, capacity)
        self._type = np.resize(self._type, capacity)
        self._ts = np.resize(self._ts, capacity)
        self._alive = np.concatenate([self._alive, np.zeros(capacity - len(self._alive), dtype=bool)])
        self._ids += [None] * (capacity - len(self._ids))

    def _compact(self) -> None:
        keep = [slot for slot in range(self._used) if self._alive[slot]]
        rows = [(self._ids[s], self._namespace[s], self._type[s], self._ts[s], self._vectors[s].copy()) for s in keep]
        namespaces = {code: name for name, code in self._namespaces.items()}
        types = {code: name for name, code in _TYPES.items()}
        self._clear(max(1024, 2 * len(rows)))
        for item_id, ns, kind, ts, vector in rows:
            event_ts = None if np.isnan(ts) else float(ts)
            self._put(str(item_id), namespaces[int(ns)], types[int(kind)], event_ts, vector)

    # searching -----------------------------------------------------------------------------
    def search(
        self,
        vector: Any,
        namespace: str,
        memory_types: tuple[str, ...],
        start_ts: float | None,
        end_ts: float | None,
        limit: int,
    ) -> list[tuple[str, float]]:
        """The `limit` most similar live items passing the filter, by cosine (vectors are unit length)."""
        with self._lock:
            code = self._namespaces.get(namespace)
            if code is None or self._used == 0:
                return []
            used = self._used
            mask = self._alive[:used] & (self._namespace[:used] == code)
            mask &= np.isin(self._type[:used], [_TYPES[t] for t in memory_types])
            if start_ts is not None:
                mask &= self._ts[:used] >= start_ts  # NaN (no event time) compares False: excluded
            if end_ts is not None:
                mask &= self._ts[:used] <= end_ts
            candidates = int(mask.sum())
            if candidates == 0:
                return []
            # One product over every row (no copy), then the filter: cheaper than gathering rows.
            scores = self._vectors[:used] @ np.asarray(vector, dtype=np.float32)
            scores[~mask] = -np.inf
            take = min(limit, candidates)
            best = np.argpartition(-scores, take - 1)[:take]
            return sorted(((str(self._ids[i]), float(scores[i])) for i in best), key=lambda pair: (-pair[1], pair[0]))
