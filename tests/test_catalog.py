"""The published tool list (data/tools.json) is what the specs in tools.py define, and what a server lists."""

from __future__ import annotations

import subprocess
import sys

from mcp_memalpha import catalog
from mcp_memalpha.server import build_server
from mcp_memalpha.settings import Settings


def test_the_catalog_file_is_what_the_specs_define() -> None:
    assert catalog.published() == catalog.compute(), (
        "mcp_memalpha/data/tools.json is stale: run `python scripts/build_tool_catalog.py`"
    )


def test_a_server_lists_the_catalog_and_the_memorize_tools_only_with_a_policy(tmp_path) -> None:
    for policy, curation in (("off", False), ("default", True)):
        server = build_server(Settings(data_dir=tmp_path, policy=policy))
        listed = {tool.name: tool for tool in server._tool_manager.list_tools()}
        expected = [entry for entry in catalog.published() if curation or not entry["curation"]]
        assert list(listed) == [entry["name"] for entry in expected]
        for entry in expected:
            tool = listed[entry["name"]]
            assert (tool.parameters, tool.output_schema) == (entry["input_schema"], entry["output_schema"])
            assert tool.annotations is not None
            assert tool.annotations.model_dump(by_alias=True, exclude_none=True) == entry["annotations"]
    assert any(entry["curation"] for entry in catalog.published())


def test_listing_the_tools_imports_neither_their_models_nor_the_store(tmp_path) -> None:
    """What a client window waits for at start: the list is read, the specs and the store are not built."""
    probe = (
        "import sys\n"
        "from mcp_memalpha.server import build_server\n"
        "from mcp_memalpha.settings import Settings\n"
        f"build_server(Settings(data_dir={str(tmp_path)!r}), open_on_demand=True)\n"
        "print(sorted(m for m in ('mcp_memalpha.tools', 'mcp_memalpha.memory', 'mcp_memalpha.store',"
        " 'mcp_memalpha.http_security', 'mcp_memalpha.curation', 'lancedb') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
