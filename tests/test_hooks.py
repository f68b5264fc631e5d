"""Claude Code hooks, run as Claude Code runs them: the commands `hooks install` wrote, through a
shell, with recorded payloads on stdin and a transcript in Claude Code's JSON Lines format."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

from mcp_memalpha import CallContext, Memory, Settings
from tests.conftest import command, server_env

DATA = Path(__file__).parent / "data" / "claude_code"
CONVERSATION = [
    "User: I'm Maya. Our field station is on Berlenga island; please keep the tide tables in UTC.",
    "Assistant: Noted: tide tables in UTC for the Berlenga field station.",
    "User: Read tides.csv and tell me the next low tide.",
    "Assistant: The next low tide is at 14:12 UTC, 0.4 m.",
]
LATER = [
    "User: Also: the boat to Berlenga leaves Peniche at 9:30.",
    "Assistant: Got it: the boat leaves Peniche at 9:30.",
]
# A user's own settings, formatted their way, with a hook of their own that must survive.
USER_SETTINGS = b"""{
    "model": "sonnet",
    "hooks": {
        "SessionStart": [ { "matcher": "startup", "hooks": [ { "type": "command", "command": "echo hi" } ] } ]
    }
}
"""


def mcp_memalpha(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = server_env(HOME=str(home))
    return subprocess.run([*command(), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def installed_commands(settings_file: Path) -> dict[str, str]:
    hooks = json.loads(settings_file.read_text())["hooks"]
    ours = {}
    for event in ("SessionStart", "PreCompact", "SessionEnd"):
        (entry,) = [g for g in hooks[event] if "hooks run claude-code" in g["hooks"][0]["command"]]
        ours[event] = entry["hooks"][0]["command"]
    return ours


def fire(hook_command: str, payload: str, transcript: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run a hook the way Claude Code does: the command line through a shell, the payload on stdin."""
    stdin = (DATA / payload).read_text().replace("TRANSCRIPT", str(transcript))
    return subprocess.run(
        hook_command,
        shell=True,
        input=stdin,
        capture_output=True,
        text=True,
        env=server_env(HOME=str(home)),
        timeout=120,
    )


def episodic(data_dir: Path) -> list[str]:
    with Memory(Settings(data_dir=data_dir)) as memory:
        return [item.content for item in memory.iter_items(None) if item.memory_type == "episodic"]


def test_installed_hooks_bring_memory_in_and_the_conversation_out_once(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    settings_file = home / ".claude" / "settings.json"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_bytes(USER_SETTINGS)
    with Memory(Settings(data_dir=data)) as memory:
        memory.set_core(CallContext(), "Maya is a marine biologist who studies terns.")
        memory.insert(CallContext(), "semantic", "Maya's field station is on Berlenga island")

    installed = mcp_memalpha(home, "hooks", "install", "claude-code", "--user", "--data-dir", str(data))
    assert installed.returncode == 0, installed.stderr
    hooks = installed_commands(settings_file)
    assert json.loads(settings_file.read_text())["hooks"]["SessionStart"][0]["hooks"][0]["command"] == "echo hi"

    transcript = tmp_path / "session.jsonl"
    shutil.copy(DATA / "transcript_part1.jsonl", transcript)
    started = fire(hooks["SessionStart"], "session_start.json", transcript, home)
    assert started.returncode == 0, started.stderr
    context = json.loads(started.stdout)["hookSpecificOutput"]
    assert context["hookEventName"] == "SessionStart"
    assert "Maya is a marine biologist who studies terns." in context["additionalContext"]
    assert "field station is on Berlenga island" in context["additionalContext"]

    for event, payload in (("PreCompact", "pre_compact.json"), ("SessionEnd", "session_end.json")) * 2:
        fired = fire(hooks[event], payload, transcript, home)
        assert fired.returncode == 0, fired.stderr
    assert sorted(episodic(data)) == sorted(CONVERSATION)  # tool calls, meta and sidechain left out

    with transcript.open("a") as handle:  # the session goes on, then ends (twice)
        handle.write((DATA / "transcript_part2.jsonl").read_text())
    for _ in range(2):
        assert fire(hooks["SessionEnd"], "session_end.json", transcript, home).returncode == 0
    assert sorted(episodic(data)) == sorted(CONVERSATION + LATER)
    with Memory(Settings(data_dir=data)) as memory:
        hits = {hit.item.content: hit.item for hit in memory.search(CallContext(), "boat to Peniche", top_k=2).hits}
        assert set(hits) == set(LATER) and hits[LATER[0]].event_time == "2026-11-30T09:05:00Z"

    removed = mcp_memalpha(home, "hooks", "uninstall", "claude-code", "--user", "--data-dir", str(data))
    assert removed.returncode == 0, removed.stderr
    assert settings_file.read_bytes() == USER_SETTINGS


def test_project_install_without_a_settings_file_and_uninstall_leaves_none(tmp_path: Path) -> None:
    project, data = tmp_path / "project", tmp_path / "data"
    project.mkdir()
    args = ("claude-code", "--project", "--data-dir", str(data))
    assert mcp_memalpha(tmp_path, "hooks", "install", *args, cwd=project).returncode == 0
    settings_file = project / ".claude" / "settings.json"
    assert set(installed_commands(settings_file)) == {"SessionStart", "PreCompact", "SessionEnd"}
    again = mcp_memalpha(tmp_path, "hooks", "install", *args, cwd=project)
    assert (
        "already installed" in again.stdout and len(json.loads(settings_file.read_text())["hooks"]["SessionEnd"]) == 1
    )
    assert mcp_memalpha(tmp_path, "hooks", "uninstall", *args, cwd=project).returncode == 0
    assert not settings_file.exists()


def test_uninstall_after_other_edits_removes_only_our_entries(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    assert mcp_memalpha(home, "hooks", "install", "claude-code", "--data-dir", str(data)).returncode == 0
    settings_file = home / ".claude" / "settings.json"
    edited = json.loads(settings_file.read_text()) | {"theme": "dark"}
    settings_file.write_text(json.dumps(edited))
    assert mcp_memalpha(home, "hooks", "uninstall", "claude-code", "--data-dir", str(data)).returncode == 0
    assert json.loads(settings_file.read_text()) == {"theme": "dark"}


def test_with_memorize_the_conversation_goes_to_the_curator_queue_once(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    installed = mcp_memalpha(home, "hooks", "install", "claude-code", "--data-dir", str(data), "--memorize")
    assert installed.returncode == 0, installed.stderr
    hooks = installed_commands(home / ".claude" / "settings.json")
    transcript = tmp_path / "session.jsonl"
    shutil.copy(DATA / "transcript_part1.jsonl", transcript)
    for _ in range(2):
        fired = fire(hooks["SessionEnd"], "session_end.json", transcript, home)
        assert fired.returncode == 0 and "memorize queue" in fired.stderr, fired.stderr
    conn = sqlite3.connect(data / "memory.db")
    jobs = conn.execute("SELECT chunk, timestamp, state FROM jobs").fetchall()
    conn.close()
    assert jobs == [("\n\n".join(CONVERSATION), "2026-11-30T09:00:05.120Z", "queued")]
    assert episodic(data) == []


def test_a_bad_payload_is_one_line(tmp_path: Path) -> None:
    run = [*command(), "hooks", "run", "claude-code", "--data-dir", str(tmp_path / "d")]
    for stdin, reason in (
        ("not json", "hook payload"),
        ('{"session_id": "x"}', "hook_event_name"),
        ('{"hook_event_name": "SessionEnd", "transcript_path": "/nowhere.jsonl"}', "no transcript at /nowhere.jsonl"),
        ('{"hook_event_name": "Stop"}', "'Stop' is not one of"),
    ):
        result = subprocess.run(run, input=stdin, capture_output=True, text=True, env=server_env(), timeout=120)
        assert result.returncode == 1 and reason in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
