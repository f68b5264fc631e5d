"""Reduced runs of the benchmark scripts, so they stay runnable (figures come from full runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_speed_benchmark_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "speed.py"),
            "--sizes",
            "300",
            "--queries",
            "5",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "speed.md").read_text()
    assert "| hybrid search p50 / p95 (ms) |" in table and "300 items" in table
    assert "| MCP round trip floor: core_memory_read p50 (ms) |" in table
    assert (tmp_path / "speed.png").stat().st_size > 10_000


def test_startup_benchmark_smoke() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "startup.py"),
            *("--runs", "1", "--items", "20", "--idle-seconds", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "spawn -> initialize reply, mcp-memalpha serve" in result.stdout
    assert "spawn -> tools/list reply, mcp-memalpha serve" in result.stdout
    assert "tools/list result: " in result.stdout and "RSS after the first search (20 items)" in result.stdout
