"""Claude Code hooks: the memory at session start, the conversation into memory at its end.

`mcp-memalpha hooks install claude-code` adds three entries to a Claude Code settings file (the
documented `hooks` format: event -> list of `{"hooks": [{"type": "command", "command": ...}]}`),
all running `mcp-memalpha hooks run claude-code`, which reads the hook's JSON payload on stdin:

- `SessionStart` prints the `memory_context` rendering (core memory and the newest memories) as
  the hook's `additionalContext`, which Claude Code puts into the session.
- `PreCompact` and `SessionEnd` forward the part of the transcript (`transcript_path`, JSON Lines
  of `{"type": "user"|"assistant", "message": {"content": ...}, "timestamp", ...}`) not forwarded
  before: to the curator's memorize queue when asked (`--memorize`, or `MEMALPHA_POLICY` set), else
  as verbatim episodic memories, one per message. How far each transcript was forwarded (a byte
  offset just past its last complete line) is kept in the data folder, so nothing goes twice.

The install keeps what the settings file was before (in the data folder), and `hooks uninstall`
removes exactly the added entries: when nothing else changed, the file is byte-identical to
before (or gone, if there was none).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, ValidationError

from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.settings import Settings

EVENTS = ("SessionStart", "PreCompact", "SessionEnd")
ROLES = {"user": "User", "assistant": "Assistant"}


class HookPayload(BaseModel):
    """The fields of Claude Code's hook input this module reads (it sends more)."""

    model_config = ConfigDict(extra="allow")
    hook_event_name: str
    session_id: str = ""
    transcript_path: str | None = None


# installing ------------------------------------------------------------------------------------
def hook_command(launch: list[str], options: list[str]) -> str:
    """The shell command Claude Code runs for every event (it passes the event in the payload)."""
    return shlex.join([*launch, "hooks", "run", "claude-code", *options])


def _entries(command: str) -> dict[str, dict[str, Any]]:
    return {event: {"hooks": [{"type": "command", "command": command, "timeout": 120}]} for event in EVENTS}


def _record_path(settings: Settings, settings_file: Path) -> Path:
    key = hashlib.sha256(str(settings_file.resolve()).encode()).hexdigest()[:16]
    return settings.data_dir / "hooks" / f"claude-code-install-{key}.json"


def install(settings: Settings, settings_file: Path, command: str) -> str:
    """Add the hook entries to `settings_file`; returns what was done, in words."""
    record = _record_path(settings, settings_file)
    if record.exists():
        return f"already installed in {settings_file} (run `mcp-memalpha hooks uninstall` first to change it)"
    before = settings_file.read_bytes() if settings_file.exists() else None
    config = _load(settings_file, before)
    hooks = config.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InvalidArgument(f"{settings_file}: hooks", "is not a JSON object")
    for event, entry in _entries(command).items():
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise InvalidArgument(f"{settings_file}: hooks.{event}", "is not a JSON list")
        groups.append(entry)
    record.parent.mkdir(parents=True, exist_ok=True)
    saved = {"settings_file": str(settings_file.resolve()), "command": command, "before": _decoded(before)}
    record.write_text(json.dumps(saved))
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return f"added SessionStart, PreCompact and SessionEnd hooks to {settings_file}"


def uninstall(settings: Settings, settings_file: Path) -> str:
    """Remove exactly the entries `install` added to `settings_file`."""
    record = _record_path(settings, settings_file)
    if not record.exists():
        return f"no mcp-memalpha hooks were installed in {settings_file} from {settings.data_dir}"
    saved = json.loads(record.read_text())
    config = _load(settings_file, settings_file.read_bytes() if settings_file.exists() else None)
    before = _load(settings_file, saved["before"].encode()) if saved["before"] is not None else {}
    _remove_entries(config, before, _entries(saved["command"]))
    if config == before:
        # Nothing else changed since the install: give back the very bytes (or no file).
        if saved["before"] is None:
            settings_file.unlink(missing_ok=True)
        else:
            settings_file.write_bytes(saved["before"].encode("utf-8"))
    else:
        settings_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    record.unlink()
    return f"removed the mcp-memalpha hooks from {settings_file}"


def _remove_entries(config: dict[str, Any], before: dict[str, Any], entries: dict[str, dict[str, Any]]) -> None:
    """Drop our entries, and the lists and `hooks` object the install created for them."""
    hooks = config.get("hooks")
    if not isinstance(hooks, dict):
        return
    had = before.get("hooks")
    had = had if isinstance(had, dict) else {}
    for event, entry in entries.items():
        groups = hooks.get(event)
        if isinstance(groups, list) and entry in groups:
            groups.remove(entry)
            if not groups and event not in had:
                del hooks[event]
    if not hooks and "hooks" not in before:
        del config["hooks"]


def _load(path: Path, raw: bytes | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(str(path), f"is not JSON ({exc}); fix or move it first") from None
    if not isinstance(config, dict):
        raise InvalidArgument(str(path), "is not a JSON object")
    return config


def _decoded(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8")


# running ---------------------------------------------------------------------------------------
def read_payload(raw: str) -> HookPayload:
    try:
        return HookPayload.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in error["loc"]) or "payload"
        raise InvalidArgument(f"hook payload: {field}", error["msg"]) from None


def session_start_output(context: str) -> str:
    """What SessionStart prints: Claude Code adds `additionalContext` to the session."""
    output = {"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": context}}
    return json.dumps(output, ensure_ascii=False)


@dataclass(frozen=True)
class Message:
    role: str
    text: str
    timestamp: str | None

    def render(self) -> str:
        return f"{ROLES[self.role]}: {self.text}"


def transcript_messages(lines: list[bytes]) -> Iterator[Message]:
    """The conversation's user and assistant text, in order. Left out: tool calls and their
    results, thinking, meta and sidechain (subagent) messages, and other record types."""
    for line in lines:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a torn or foreign line says nothing worth keeping
        if not isinstance(record, dict) or record.get("type") not in ROLES:
            continue
        if record.get("isMeta") or record.get("isSidechain"):
            continue
        message = record.get("message")
        text = _text_of(message.get("content") if isinstance(message, dict) else None)
        if text:
            timestamp = record.get("timestamp")
            yield Message(record["type"], text, timestamp if isinstance(timestamp, str) else None)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return ""


class Forwarded:
    """How far each transcript has been forwarded, kept in the data folder under a file lock (a
    PreCompact and a SessionEnd hook may run at once)."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.data_dir / "hooks" / "claude-code-forwarded.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.path) + ".lock")

    def offsets(self) -> dict[str, int]:
        try:
            return {str(k): int(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def save(self, offsets: dict[str, int]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(offsets, indent=1))
        tmp.replace(self.path)


def new_lines(transcript: Path, offset: int) -> tuple[list[bytes], int]:
    """The complete lines after `offset`, and the offset just past them (a line still being
    written waits for the next hook)."""
    data = transcript.read_bytes()
    if len(data) < offset:  # the file was replaced by a shorter one: read it from the start
        offset = 0
    end = data.rfind(b"\n", offset) + 1
    if end <= offset:
        return [], offset
    return data[offset:end].splitlines(), end


def chunks(messages: list[Message], max_chars: int) -> Iterator[tuple[str, str | None]]:
    """Messages joined into texts of at most `max_chars` characters (a longer message is cut),
    each with the time of its first message."""
    current: list[str] = []
    started: str | None = None
    for message in messages:
        for piece in _pieces(message.render(), max_chars):
            if current and sum(len(p) + 2 for p in current) + len(piece) > max_chars:
                yield "\n\n".join(current), started
                current = []
            if not current:
                started = message.timestamp
            current.append(piece)
    if current:
        yield "\n\n".join(current), started


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    for start in range(0, len(text), max_chars):
        yield text[start : start + max_chars]


def run_hook(settings: Settings, raw_payload: str, memorize: bool) -> tuple[str, str]:
    """Handle one hook call; returns (stdout for Claude Code, a line for stderr)."""
    payload = read_payload(raw_payload)
    if payload.hook_event_name == "SessionStart":
        return session_start_output(memory_context(settings)), ""
    if payload.hook_event_name in ("PreCompact", "SessionEnd"):
        count, where = forward_transcript(settings, payload, memorize)
        return "", f"mcp-memalpha: forwarded {count} new messages to {where}"
    raise InvalidArgument("hook payload: hook_event_name", f"{payload.hook_event_name!r} is not one of {EVENTS}")


def memory_context(settings: Settings) -> str:
    """The server's `memory_context` prompt (no topic: the newest memories), through an
    in-process MCP client, so the session sees exactly what a client asking for it would."""
    import anyio
    from mcp import Client

    from mcp_memalpha.server import build_server

    # No curator (the hook only reads), and quiet: Claude Code shows a hook's stderr to the user.
    server = build_server(settings.model_copy(update={"policy": "off", "log_level": "WARNING"}))

    async def render() -> str:
        async with Client(server) as client:
            result = await client.get_prompt("memory_context", {})
        return "\n".join(m.content.text for m in result.messages if m.content.type == "text")

    return anyio.run(render)


def forward_transcript(settings: Settings, payload: HookPayload, memorize: bool) -> tuple[int, str]:
    """Forward the transcript's messages not forwarded before; returns how many, and where to."""
    from mcp_memalpha.memory import Memory

    if not payload.transcript_path:
        raise InvalidArgument("hook payload: transcript_path", "is missing; Claude Code sends it with every event")
    transcript = Path(payload.transcript_path).expanduser()
    if not transcript.is_file():
        raise InvalidArgument("hook payload: transcript_path", f"no transcript at {transcript}")
    forwarded = Forwarded(settings)
    key = str(transcript.resolve())
    where = "the memorize queue" if memorize else "episodic memory"
    with forwarded.lock:
        offsets = forwarded.offsets()
        lines, end = new_lines(transcript, offsets.get(key, 0))
        messages = list(transcript_messages(lines))
        if messages:
            with Memory(settings) as memory:
                _store(memory, settings, messages, memorize)
        offsets[key] = end
        forwarded.save(offsets)
    return len(messages), where


def _store(memory: Any, settings: Settings, messages: list[Message], memorize: bool) -> None:
    from mcp_memalpha.jobs import JobQueue
    from mcp_memalpha.memory import CallContext

    ctx = CallContext(namespace=settings.namespace)
    if memorize:
        # The curator decides what to keep; a running `serve --policy` works the queue.
        queue = JobQueue(memory.ledger, settings)
        for chunk, started in chunks(messages, settings.policy_max_chunk_tokens * 2):
            queue.enqueue(ctx, chunk, started)
        return
    for message in messages:
        for piece in _pieces(message.render(), settings.max_content_chars):
            memory.insert(ctx, "episodic", piece, message.timestamp)
