"""Storage: the SQLite ledger (source of truth) and the LanceDB search index derived from it."""

from mcp_memalpha.store.ledger import CoreRow, ItemRow, Ledger, OpRow

__all__ = ["CoreRow", "ItemRow", "Ledger", "OpRow"]
