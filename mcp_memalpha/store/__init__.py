"""Storage: the ledger (source of truth; SQLite or PostgreSQL) and the LanceDB search index derived from it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_memalpha.store.ledger import CoreRow, IdTaken, ItemRow, JobRow, Ledger, OpRow

if TYPE_CHECKING:
    from mcp_memalpha.settings import Settings

__all__ = ["CoreRow", "IdTaken", "ItemRow", "JobRow", "Ledger", "OpRow", "ledger_for"]


def ledger_for(settings: Settings) -> Ledger:
    """The ledger the settings name (not opened yet): PostgreSQL when `database_url` is set, else
    SQLite in the data directory (memory.db). PostgreSQL's driver is imported only then."""
    if settings.database_url:
        from mcp_memalpha.store.postgres import PostgresLedger

        return PostgresLedger(settings.database_url)
    from mcp_memalpha.store.sqlite import SqliteLedger

    return SqliteLedger(settings.ledger_path, derived=[settings.index_path])
