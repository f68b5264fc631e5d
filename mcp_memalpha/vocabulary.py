"""The words the tools take: memory types, search methods, orders, write sources, and the one
place their accepted spellings (synonyms, the optional '_memory' suffix, any case) are mapped to
the canonical names. The argument models, `Memory` and the training judge all read them here."""

from __future__ import annotations

from typing import Any, Literal

ItemType = Literal["semantic", "episodic"]
MemoryType = Literal["core", "semantic", "episodic"]
Source = Literal["client", "policy", "import"]
SearchMethod = Literal["hybrid", "bm25", "vector"]
Order = Literal["relevance", "chronological"]
ITEM_TYPES: tuple[ItemType, ...] = ("episodic", "semantic")
SOURCES: tuple[Source, ...] = ("client", "policy", "import")

_MEMORY_TYPES = {spelling: kind for kind in ("core", "episodic", "semantic") for spelling in (kind, f"{kind}_memory")}
# 'text-embedding' is Mem-α's name for vector search; the empty method is the default.
_SEARCH_METHODS = {
    "": "hybrid",
    "hybrid": "hybrid",
    "bm25": "bm25",
    "vector": "vector",
    "text-embedding": "vector",
    "text_embedding": "vector",
    "embedding": "vector",
}


def memory_type_name(value: Any) -> Any:
    """'core', 'episodic' or 'semantic' for any accepted spelling ('Episodic_Memory', ' semantic ');
    anything else comes back as given (stripped and lower-cased if text), for the caller to refuse."""
    if not isinstance(value, str):
        return value
    key = value.strip().lower()
    return _MEMORY_TYPES.get(key, key)


def search_method_name(value: Any) -> Any:
    """'hybrid', 'bm25' or 'vector' for any accepted spelling; anything else as given (stripped and
    lower-cased if text), for the caller to refuse."""
    if not isinstance(value, str):
        return value
    key = value.strip().lower()
    return _SEARCH_METHODS.get(key, key)
