"""The curator's prompt: our own words, in the structure of the Mem-α method (memory state in the
system message, the chunk and what to do with it in the user message), plus what the paper's
writer lacked: the items most related to the chunk, retrieved by search, with their ids."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mcp_memalpha.policy.calls import Execute

INSTRUCTIONS = """\
You curate the long-term memory of an assistant. The memory has three parts:
- core memory: one short paragraph about the user, always shown to the assistant;
- episodic memory: events, one sentence each: who did what, and when;
- semantic memory: facts that stay true: people, relations, jobs, places, preferences.

Read the new conversation and record what is worth remembering later:
1. Insert each new event as an episodic memory and each new fact as a semantic memory.
2. When a memory below says something the conversation changes, update that memory by its id
   (or delete it) instead of inserting a near-duplicate.
3. Keep the core memory a brief, current summary of the user.
Write only what the conversation says. Skip greetings and small talk."""

# Chat-template control tokens (<|im_end|>, <|im_start|>, ...) and the Memalpha call markers, when
# they appear in user text, would be read as structure: show them with a zero-width break.
CONTROL = re.compile(r"<\|([^|<>\s]{1,40})\|>|✿")
SPEAKER = re.compile(r"^([^:\n]{1,40}):\s+(.+)$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_LINE_CHARS = 300
RELATED_ITEMS = 8  # stored memories shown to the writer
QUERY_CHARS = 1500  # of the chunk, used as the search query for related memories


@dataclass(frozen=True)
class Related:
    """A memory already stored that the chunk may change."""

    memory_id: str
    memory_type: str
    text: str  # as a reader sees it: "[8 May 2023] content"


@dataclass(frozen=True)
class ChunkContext:
    """What the writer sees besides the chunk."""

    chunk: str
    timestamp: str | None
    core: str = ""
    related: tuple[Related, ...] = ()
    lines: tuple[str, ...] = field(default=())  # the chunk's statements, for extractive writing
    state: Any = None  # a format's own per-prompt state (the memalpha view and its aliases)

    @classmethod
    def build(cls, chunk: str, timestamp: str | None, core: str, related: tuple[Related, ...]) -> ChunkContext:
        return cls(chunk, timestamp, core, related, statements(chunk))


def statements(chunk: str) -> tuple[str, ...]:
    """The chunk as self-contained statements: one per line ("Speaker: text"), long lines split
    into sentences that keep their speaker, bracketed headers dropped, duplicates removed."""
    found: list[str] = []
    for raw in chunk.splitlines():
        line = " ".join(raw.split())
        if not line or (line.startswith("[") and line.endswith("]")):
            continue
        match = SPEAKER.match(line)
        speaker, text = (match.group(1) + ": ", match.group(2)) if match else ("", line)
        parts = [text] if len(line) <= MAX_LINE_CHARS else SENTENCE_END.split(text)
        for part in parts:
            statement = (speaker + part)[:MAX_LINE_CHARS].strip()
            if len(statement) > len(speaker) + 1 and statement not in found:
                found.append(statement)
    return tuple(found)


def safe(text: str) -> str:
    """User text as it is shown in a prompt: control markers defused, everything else as is."""
    return CONTROL.sub(lambda m: "<\u200b|" + m.group(1) + "|\u200b>" if m.group(1) else "*", text)


def memory_section(context: ChunkContext) -> str:
    lines = ["## Core memory", safe(context.core) or "(empty)", "", "## Stored memories related to the conversation"]
    lines += [f"- [{item.memory_type}] id={item.memory_id}: {safe(item.text)}" for item in context.related] or [
        "(none)"
    ]
    return "\n".join(lines)


def chunk_message(context: ChunkContext) -> str:
    when = f" on {context.timestamp}" if context.timestamp else ""
    return f"New conversation{when}:\n\n{safe(context.chunk.strip())}\n\nRecord what is worth remembering."


def read_context(chunk: str, timestamp: str | None, execute: Execute) -> ChunkContext:
    """Core and the related memories, read through the same tools a client uses."""
    core = execute("core_memory_read", {})
    # Whole texts: the curator may rewrite what it reads.
    found = execute("search_memory", {"query": chunk[:QUERY_CHARS], "top_k": RELATED_ITEMS, "excerpt_tokens": 0})
    related: tuple[Related, ...] = ()
    if found.ok and isinstance(found.output, dict):
        related = tuple(
            Related(hit["memory_id"], hit["memory_type"], hit["text"]) for hit in found.output.get("results", [])
        )
    core_text = core.output.get("content", "") if core.ok and isinstance(core.output, dict) else ""
    return ChunkContext.build(chunk, timestamp, core_text, related)
