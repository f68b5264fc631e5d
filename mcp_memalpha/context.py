"""Who a call comes from, and the text checks every write path shares.

Kept apart from the operations (`memory`) and the job queue (`jobs`), which both use them, so
neither has to import the other for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.settings import NAMESPACE_PATTERN
from mcp_memalpha.vocabulary import SOURCES, Source


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the namespace they act in, and what a write is attributed to."""

    namespace: str = "default"
    source: Source = "client"
    job_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not NAMESPACE_PATTERN.fullmatch(self.namespace):
            raise InvalidArgument("namespace", f"{self.namespace!r} is not a valid namespace")
        if self.source not in SOURCES:
            raise InvalidArgument("source", f"{self.source!r} is not one of {', '.join(SOURCES)}")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def clean_text(value: object, field: str, empty: str) -> str:
    """Stripped text that SQLite, LanceDB and JSON can all store, or InvalidArgument."""
    if not isinstance(value, str):
        raise InvalidArgument(field, f"must be text, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidArgument(field, empty)
    if "\x00" in text:
        raise InvalidArgument(field, "contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(field, "contains invalid Unicode (a lone surrogate)") from None
    return text
