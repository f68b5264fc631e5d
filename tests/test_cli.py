"""The command line: export/import round trip, demo, and refusals with clear messages."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mcp_memalpha import CallContext, Memory, Settings, cli
from mcp_memalpha.cli import main
from tests.conftest import command, server_env


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command(), *args], capture_output=True, text=True, env=server_env(), timeout=120)


def test_export_import_round_trip_through_the_cli(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    with Memory(Settings(data_dir=source)) as memory:
        ctx = CallContext()
        memory.set_core(ctx, "Ravi runs marathons.")
        memory.insert(ctx, "episodic", "Ravi ran the Berlin marathon", "24 September 2023")
        memory.insert(CallContext(namespace="work"), "semantic", "Ravi manages the payments team")
    first = tmp_path / "first.jsonl"
    assert run("export", "--data-dir", str(source), "-o", str(first)).returncode == 0
    imported = run("import", str(first), "--data-dir", str(target))
    assert imported.returncode == 0, imported.stderr
    assert "2 added" in imported.stderr and "1 core" in imported.stderr
    second = run("export", "--data-dir", str(target))
    assert second.stdout.splitlines()[1:] == first.read_text().splitlines()[1:]
    # the imported store is searchable right away
    with Memory(Settings(data_dir=target)) as memory:
        hits = memory.search(CallContext(), "Berlin marathon").hits
        assert hits[0].item.event_time == "2023-09-24T00:00:00"


def test_export_of_a_folder_without_a_memory_is_an_error_that_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    result = run("export", "--data-dir", str(empty), "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 1 and f"no memory at {empty}" in result.stderr
    assert not empty.exists() and not (tmp_path / "out.jsonl").exists()


def test_import_of_a_bad_file_names_the_line_and_changes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"record": "header", "format": "mcp-memalpha", "format_version": 1, "exported_at": "x"}\n{"record":'
    )
    result = run("import", str(bad), "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0 and "nothing was imported" in result.stderr and "line 2" in result.stderr


def test_bad_settings_name_the_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), "--namespace", "bad name!"])
    assert result.exit_code == 2 and "--namespace" in result.output
    result = CliRunner().invoke(main, ["serve", "--transport", "http", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--host" in result.output and "loopback" in result.output


def test_demo_runs_on_embedded_defaults() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stderr
    assert "Core memory" in result.stdout and "Episodic memory (12)" in result.stdout
    assert "Q: When does Maya fly to Lisbon?" in result.stdout and "April 18th" in result.stdout
    curated = result.stdout.split("The curator: the same conversation")[1]  # part 2: the embedded curator
    assert curated.count(": done, ") == 2 and "ok  new_memory_insert" in curated


def test_a_bad_policy_is_refused_at_startup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip file")
    cases = [
        (
            ["--policy", str(tmp_path / "missing.gguf")],
            "is not 'off', 'default', 'untrained' or the path of an existing GGUF",
        ),
        (["--policy", str(not_gguf)], "is not a GGUF model file"),
        (["--policy", "sometimes"], "is not 'off', 'default', 'untrained'"),
    ]
    for args, reason in cases:
        result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "d"), *args])
        assert result.exit_code == 2 and "--policy" in result.output and reason in result.output, result.output
    monkeypatch.setattr(cli, "policy_runtime_installed", lambda: False)
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "d"), "--policy", "DEFAULT"])
    assert result.exit_code == 2 and "--policy" in result.output and "mcp-memalpha[policy]" in result.output


def test_policy_settings(tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert Settings(data_dir=tmp_path, policy=str(model)).policy == str(model.resolve())
    assert Settings(data_dir=tmp_path, policy=" Off ").policy_on is False
    assert Settings(data_dir=tmp_path).policy == "off"


def test_an_unusable_data_directory_stops_serve_and_doctor_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "memory.db").write_bytes(b"this is not an SQLite database, just some bytes" * 20)
    runs = {
        "cannot create the data directory": ["serve", "--data-dir", str(blocker / "data")],
        "the memory database is damaged": ["doctor", "--data-dir", str(damaged)],
    }
    for reason, args in runs.items():
        done = subprocess.run(
            [*command(), *args], capture_output=True, text=True, env=server_env(), timeout=60, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 1
        assert done.stderr.startswith("Error: storage: ") and reason in done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
