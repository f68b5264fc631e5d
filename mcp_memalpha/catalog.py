"""The tool list a server publishes, read from `data/tools.json` instead of built at start.

Each tool's name, title, description, schemas and hints come from its `tools.ToolSpec`. Building
the specs' pydantic models and their JSON schemas takes about a third of what a starting server
adds to the SDK's own import time, and a client window needs only the published list until its
first call (most windows idle most of the time). So `compute()` derives the list from the specs
once, offline (`python scripts/build_tool_catalog.py`; a test fails when the file is stale), and
`entries()` reads it; `tools.py` is imported at the first call, and its models validate every call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_memalpha.tools import ToolSpec

CATALOG_FILE = "tools.json"  # in the package's data folder


@dataclass(frozen=True)
class Entry:
    """One published tool. `annotations` are its ToolAnnotations as the protocol writes them;
    `curation`: served only with a curator policy; `reports_progress`: takes the request's context."""

    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    annotations: dict[str, Any]
    curation: bool
    reports_progress: bool


def entries(*, curation: bool) -> tuple[Entry, ...]:
    """The tools a server publishes, in order; the memorize tools only with `curation`."""
    return tuple(entry for entry in _published() if curation or not entry.curation)


def published() -> list[dict[str, Any]]:
    """The catalog file as it is."""
    return json.loads(files("mcp_memalpha").joinpath("data", CATALOG_FILE).read_text(encoding="utf-8"))


@cache
def _published() -> tuple[Entry, ...]:
    return tuple(Entry(**entry) for entry in published())


def compute() -> list[dict[str, Any]]:
    """The catalog as the specs in `tools.py` define it now (what the file must hold)."""
    from mcp_memalpha.tools import CURATION_TOOLS, TOOLS

    return [_entry(spec, curation=False) for spec in TOOLS] + [_entry(spec, curation=True) for spec in CURATION_TOOLS]


def _entry(spec: ToolSpec[Any, Any], *, curation: bool) -> dict[str, Any]:
    return {
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "input_schema": spec.input_schema(),
        "output_schema": spec.output_schema(),
        "annotations": hints(spec),
        "curation": curation,
        "reports_progress": spec.with_progress is not None,
    }


def hints(spec: ToolSpec[Any, Any]) -> dict[str, Any]:
    """The spec's hints as the protocol reads them: read-only only when true (false is the default);
    destructive and idempotent only for a tool that writes (they mean nothing for one that reads);
    the title is the tool's own."""
    writes = not spec.read_only
    given = {
        "readOnlyHint": spec.read_only or None,
        "destructiveHint": spec.destructive if writes else None,
        "idempotentHint": (spec.idempotent or None) if writes else None,
        "openWorldHint": False,
    }
    return {name: value for name, value in given.items() if value is not None}
