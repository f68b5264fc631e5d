"""Write `mcp_memalpha/data/tools.json`, the tool list a server publishes (run after changing a tool).

A starting server reads that file instead of building every tool's pydantic models and schemas
(`mcp_memalpha/catalog.py`); `tests/test_catalog.py` fails while the file differs from the specs.

    python scripts/build_tool_catalog.py
"""

from __future__ import annotations

import json
from importlib.resources import files

from mcp_memalpha.catalog import CATALOG_FILE, compute


def main() -> None:
    path = files("mcp_memalpha").joinpath("data", CATALOG_FILE)
    text = json.dumps(compute(), ensure_ascii=False, indent=1) + "\n"
    with open(str(path), "w", encoding="utf-8") as out:
        out.write(text)
    print(f"wrote {path} ({len(text.encode()):,} bytes)")


if __name__ == "__main__":
    main()
