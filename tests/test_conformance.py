"""The official MCP conformance suite against `serve --transport http`: every scenario passes
except those in tests/conformance/expected-failures.yml (each listed with its reason), and the
suite itself fails the run if one of those starts to pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import http_server
from tests.npm import CONFORMANCE, NODE_22, node, package_dir

EXPECTED_FAILURES = Path(__file__).parent / "conformance" / "expected-failures.yml"


def test_conformance_suite_passes_all_but_the_listed_scenarios(tmp_path: Path) -> None:
    node()  # npm (which comes with Node) installs the two packages
    node_22 = package_dir(NODE_22) / "bin" / "node"
    suite = package_dir(CONFORMANCE) / "dist" / "index.js"
    with http_server(tmp_path / "data", "--log-level", "WARNING") as (url, _):  # (stderr is not read)
        result = subprocess.run(
            [str(node_22), str(suite), "server", "--url", url, "--expected-failures", str(EXPECTED_FAILURES)],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # it writes its results/ folder here
            timeout=600,
        )
    summary = result.stdout[result.stdout.find("=== SUMMARY ===") :]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    assert "Total: 11 passed, 21 failed" in summary
