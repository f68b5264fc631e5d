"""The `memalpha` wire format: the input Memalpha-4B was trained on, and its output read as Mem-α reads it.

Input (per chunk, one system and one user message, rendered by the model's own chat template with
thinking off):
- the system message is `PromptTexts.system_template` filled with the instruction lines of the
  enabled memory types and the memory view: `<core_memory>` (always there, even empty), then per
  item type the `items_shown` most recent items, oldest first, as `[ab12] content` under "(Only
  show the most recent V out of T memories)", `Empty.` for none;
- qwen-agent's own parallel function-call block for the three write tools with the schemas the
  model was trained on (`TRAINED_TOOLS`) is appended to it by qwen-agent itself;
- the user message is `unified_prompt.format(context=chunk, max_new_tokens=response_limit)`.
The ids shown are per-prompt 4-hex aliases of our real ids (`MemoryView.aliases`); an alias the
prompt did not show is an unknown id.

Output: Mem-α's regex over `✿FUNCTION✿: name` / `✿ARGS✿: {...}`, arguments mended by json-repair,
then run with the semantics the model was trained on (`run_call`, documented in docs/curator.md).

The default texts are our own words in the trained structure; `load_prompt_texts` reads others
(e.g. the paper's) from a JSON file. qwen-agent (the `memalpha` extra) is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mcp_memalpha.policy.calls import CallOutcome, Execute, ToolCall

FN_NAME, FN_ARGS, FN_RESULT, FN_EXIT = "✿FUNCTION✿", "✿ARGS✿", "✿RESULT✿", "✿RETURN✿"
# Mem-α's parser (agent.py `_parse_function_calls_from_text`): arguments run up to the next marker
# or the end and may not contain a ✿, so a call whose arguments hold one does not match at all.
CALL = re.compile(
    f"{re.escape(FN_NAME)}:\\s*([^\\n]+)\\s*{re.escape(FN_ARGS)}:\\s*([^✿]+?)"
    f"(?={re.escape(FN_RESULT)}|{re.escape(FN_EXIT)}|{re.escape(FN_NAME)}|$)",
    re.S,
)
ITEM_TYPES = ("semantic", "episodic")
TRUNCATED = " [content exceeds {limit} tokens, truncated]"  # Mem-α's marker (memory.py) for a cut core
DUPLICATE_SEARCH = 10  # stored items of the type compared with an insert, besides those in the prompt


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


_KINDS = (
    "Type of memory to {verb}: 'core' (simple paragraph), 'semantic' (general knowledge), or 'episodic' "
    "(specific experiences)"
)
_ID = "ID of the memory to {verb}. Required for semantic/episodic memories, ignored for core memory."
# The three write tools exactly as Memalpha-4B saw them (Mem-α functions.py, as passed to qwen-agent;
# ../shared/data/memalpha/reference.json): order, wording and key order are part of the prompt.
TRAINED_TOOLS: tuple[dict[str, Any], ...] = (
    _tool(
        "new_memory_insert",
        "Infer a new memory and append it to a memory store. Creates a new memory item with a unique ID. "
        "Note: Core memory cannot be inserted, only updated.",
        {
            "memory_type": {
                "type": "string",
                "description": "Type of memory to insert: 'semantic' (general knowledge) or 'episodic' (specific "
                "experiences). Core memory cannot be inserted.",
                "enum": ["semantic_memory", "episodic_memory"],
            },
            "content": {
                "type": "string",
                "description": "Content of the memory to insert. Creates a new memory item with a unique ID.",
            },
        },
        ["memory_type", "content"],
    ),
    _tool(
        "memory_update",
        "Update an existing memory. For core memory, replaces the entire paragraph content. If core memory is "
        "empty, then directly write into the core memory. For semantic/episodic memories, updates the specific "
        "memory item by ID.",
        {
            "memory_type": {
                "type": "string",
                "description": _KINDS.format(verb="update"),
                "enum": ["core_memory", "semantic_memory", "episodic_memory"],
            },
            "new_content": {
                "type": "string",
                "description": "New **combined** content for the memory. For core memory, this replaces the entire "
                "paragraph. For semantic/episodic, this replaces the content of the specified memory ID.",
            },
            "memory_id": {"type": "string", "description": _ID.format(verb="update")},
        },
        ["memory_type", "new_content"],
    ),
    _tool(
        "memory_delete",
        "Delete a memory. For core memory, clears the entire paragraph content. For semantic/episodic memories, "
        "deletes the specific memory item by ID.",
        {
            "memory_type": {
                "type": "string",
                "description": _KINDS.format(verb="delete"),
                "enum": ["core_memory", "semantic_memory", "episodic_memory"],
            },
            "memory_id": {"type": "string", "description": _ID.format(verb="delete")},
        },
        ["memory_type"],
    ),
)
WRITE_TOOL_NAMES = tuple(t["name"] for t in TRAINED_TOOLS)


def trained_tools(including_core: bool = True) -> list[dict[str, Any]]:
    """The tool schemas, with `core_memory` left out of the enums when core is disabled (as Mem-α does)."""
    tools = json.loads(json.dumps(TRAINED_TOOLS))
    if not including_core:
        for tool in tools:
            kind = tool["parameters"]["properties"]["memory_type"]
            kind["enum"] = [k for k in kind["enum"] if k != "core_memory"]
    return list(tools)


# ---- the texts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTexts:
    """The instruction texts of the format. A JSON file with these keys replaces them
    (`load_prompt_texts`); docs/curator.md describes the format."""

    system_template: str  # with {instructions_text} and {memory_state_text}
    instruction_lines: dict[str, str]  # "core", "semantic", "episodic" (and "none_enabled")
    unified_prompt: str  # with {context} and {max_new_tokens}
    including_core: bool = True
    items_shown: int = 5
    response_limit: int = 1638  # the limit the user message states: 0.8 x 2048, as trained

    def __post_init__(self) -> None:
        _placeholders("system_template", self.system_template, {"instructions_text", "memory_state_text"})
        _placeholders("unified_prompt", self.unified_prompt, {"context", "max_new_tokens"})
        for kind in ("core", "semantic", "episodic"):
            if not isinstance(self.instruction_lines.get(kind), str):
                raise ValueError(f"instruction_lines.{kind}: missing; give the line that describes {kind} memory")
        if not 0 <= self.items_shown <= 100:
            raise ValueError(f"items_shown: {self.items_shown} is out of range; use 0 to 100")

    def enabled(self) -> tuple[str, ...]:
        return ("core", *ITEM_TYPES) if self.including_core else ITEM_TYPES


def _placeholders(name: str, template: str, expected: set[str]) -> None:
    if not isinstance(template, str):
        raise ValueError(f"{name}: must be a string")
    try:
        found = {part[1] for part in string.Formatter().parse(template) if part[1] is not None}
    except ValueError as exc:
        raise ValueError(f"{name}: not a str.format template ({exc}); write a literal brace as {{{{ or }}}}") from None
    if found != expected:
        want = ", ".join("{" + p + "}" for p in sorted(expected))
        raise ValueError(f"{name}: has placeholders {sorted(found)}; it must have exactly {want}")


def load_prompt_texts(path: str | Path) -> PromptTexts:
    """The texts from a JSON file (keys of `PromptTexts`; the last three are optional)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"policy_prompt: cannot read {path} as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"policy_prompt: {path} must hold a JSON object")
    known = {f.name for f in fields(PromptTexts)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"policy_prompt: unknown key {unknown[0]!r} in {path}; the keys are {', '.join(sorted(known))}"
        )
    try:
        return PromptTexts(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"policy_prompt: {path}: {exc}") from None


DEFAULT_TEXTS = PromptTexts(
    system_template=(
        "You keep the long-term memory of an assistant. Your task now is to read what the user shares, "
        "understand it and store what is worth remembering.\n\n"
        "HOW TO MEMORIZE:\n"
        "- Read everything the user shares\n"
        "- Pick out the facts, the events and how they relate\n"
        "- Store each in the memory type it belongs to:\n"
        "{instructions_text}\n"
        "- Let these descriptions decide the type of each memory\n\n"
        "MEMORY SO FAR:\n"
        "{memory_state_text}\n\n"
        "Store new information with the memory tools; update or delete a memory by its id when the new "
        "information changes it.\n"
        "If everything is already stored, answer 'Done'. The user does not see this answer.\n"
        "You are asked only once per piece of text, so make every memory call in this one reply."
    ),
    instruction_lines={
        "core": "* core_memory: a short paragraph that sums up what is known so far",
        "semantic": "* semantic_memory: facts and knowledge that stay true",
        "episodic": "* episodic_memory: events and experiences, each with its time (always), place or context",
        "none_enabled": "* No memory type is enabled.",
    },
    unified_prompt=(
        "Memorize the following piece of text in these steps:\n\n"
        "1. **Core Memory Update**: Keep a brief picture of the user, or a summary of what the user is reading, "
        "or the rules that the labelled examples follow (label 1: meaning; label 2: meaning, etc.). A few "
        "sentences at most.\n\n"
        "2. **Memory Storage**:\n"
        "   - **Episodic Memory**: What the user, the user's friends and the assistant did, each with its time "
        '(format: "At time t, user did X")\n'
        '   - **Semantic Memory**: Key facts (format: "Ana is the user\'s sister", "Capital of Peru: Lima", '
        '"Sample: xxx; Label: xxx")\n\n'
        "<new_chunk>\n{context}\n</new_chunk>\n\n"
        "**Important**: Your reply may be at most {max_new_tokens} tokens. Keep every memory short."
    ),
)


# ---- the memory view --------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    alias: str
    memory_id: str
    content: str


@dataclass(frozen=True)
class MemoryView:
    """What one prompt shows of the memory, and the aliases it used for our ids."""

    core: str
    shown: dict[str, tuple[Shown, ...]]  # item type -> the most recent items, oldest first
    totals: dict[str, int]
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> real id

    def content_of(self, kind: str, content: str, deleted: set[str]) -> str | None:
        """The real id of a shown item of `kind` with exactly `content`, not in `deleted`."""
        items = self.shown.get(kind, ())
        return next((s.memory_id for s in items if s.content == content and s.memory_id not in deleted), None)


def shown_as(view: MemoryView, texts: list[str] | None) -> MemoryView:
    """The view with `texts` (its core, then each shown item in order, as `mcp_memalpha.policy.budget` cut them)
    in place of its own; None: an empty core and no item shown, the totals as they are."""
    if texts is None:
        return MemoryView("", {kind: () for kind in view.shown}, view.totals, view.aliases)
    rest = iter(texts[1:])
    shown = {kind: tuple(replace(item, content=next(rest)) for item in items) for kind, items in view.shown.items()}
    return MemoryView(texts[0], shown, view.totals, view.aliases)


Alias = Callable[[str, set[str]], str]


def hex_alias(memory_id: str, taken: set[str]) -> str:
    """A 4-hex alias of `memory_id`, stable across prompts, not one of `taken`."""
    for salt in range(1 << 16):
        alias = hashlib.sha256(f"{memory_id}:{salt}".encode()).hexdigest()[:4]
        if alias not in taken:
            return alias
    raise RuntimeError("no free 4-hex alias")  # 65,536 shown items: cannot happen with items_shown <= 100


def read_view(execute: Execute, texts: PromptTexts, alias: Alias = hex_alias) -> MemoryView:
    """The view, read through the same tools a client uses (core_memory_read, memory_list)."""
    core = execute("core_memory_read", {})
    core_text = core.output.get("content", "") if core.ok and isinstance(core.output, dict) else ""
    shown: dict[str, tuple[Shown, ...]] = {}
    totals: dict[str, int] = {}
    aliases: dict[str, str] = {}
    for kind in ITEM_TYPES:
        page = execute("memory_list", {"memory_type": kind, "limit": max(1, texts.items_shown), "newest_first": True})
        if not page.ok or not isinstance(page.output, dict):
            raise RuntimeError(f"memory_list({kind}) failed: {page.error}")
        rows = list(reversed(page.output["memories"][: texts.items_shown]))  # the most recent, oldest first
        total = int(page.output["total"])
        items = []
        for row in rows:
            name = alias(row["memory_id"], set(aliases))
            aliases[name] = row["memory_id"]
            items.append(Shown(name, row["memory_id"], row["content"]))
        shown[kind], totals[kind] = tuple(items), total
    return MemoryView(core_text, shown, totals, aliases)


# A chat-template control token inside user text would be read as structure (a chunk could close the
# turn and open a system one): shown with zero-width breaks. The ✿ markers stay as they are, as trained.
CONTROL = re.compile(r"<\|([^|<>\s]{1,40})\|>")


def defuse(text: str) -> str:
    return CONTROL.sub(lambda m: "<\u200b|" + m.group(1) + "|\u200b>", text)


def memory_state_text(texts: PromptTexts, view: MemoryView) -> str:
    sections = []
    if texts.including_core:
        sections.append(f"<core_memory>\n{defuse(view.core)}\n</core_memory>")
    for kind in ITEM_TYPES:
        items = view.shown.get(kind, ())
        body = "\n".join(f"[{s.alias}] {defuse(s.content)}" for s in items) or "Empty."
        header = f"<{kind}_memory> (Only show the most recent {len(items)} out of {view.totals.get(kind, 0)} memories)"
        sections.append(f"{header}\n{body}\n</{kind}_memory>")
    return "\n\n".join(sections)


def system_text(texts: PromptTexts, view: MemoryView) -> str:
    lines = [texts.instruction_lines[kind] for kind in texts.enabled()]
    instructions = "\n".join(lines) or texts.instruction_lines.get("none_enabled", "")
    return texts.system_template.format(
        instructions_text=instructions, memory_state_text=memory_state_text(texts, view)
    )


def user_text(texts: PromptTexts, chunk: str) -> str:
    # str.format, as Mem-α fills it: braces inside the chunk stay literal
    return texts.unified_prompt.format(context=defuse(chunk), max_new_tokens=texts.response_limit)


def with_tool_block(messages: list[dict[str, str]], functions: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """`messages` after qwen-agent's own `QwenFnCallPrompt.preprocess_fncall_messages` (English, parallel
    calls, choice 'auto', as Mem-α calls it), flattened back to text."""
    prompt_class, message, content_item = _qwen_agent()
    converted = [message(role=m["role"], content=[content_item(text=m["content"])]) for m in messages]
    processed = prompt_class.preprocess_fncall_messages(
        messages=converted, functions=list(functions), lang="en", parallel_function_calls=True, function_choice="auto"
    )
    return [{"role": m.role, "content": "".join(item.text for item in m.content)} for m in processed]


def _qwen_agent() -> tuple[Any, Any, Any]:
    try:
        from qwen_agent.llm.fncall_prompts.qwen_fncall_prompt import QwenFnCallPrompt
        from qwen_agent.llm.schema import ContentItem, Message
    except ImportError as exc:
        raise RuntimeError(
            f"policy_format: the memalpha format renders its tool block with qwen-agent, which is not installed "
            f"({exc}): pip install 'mcp-memalpha[memalpha]'"
        ) from None
    return QwenFnCallPrompt, Message, ContentItem


def messages(texts: PromptTexts, view: MemoryView, chunk: str) -> list[dict[str, str]]:
    """The two messages of one chunk's prompt, tool block included."""
    plain = [
        {"role": "system", "content": system_text(texts, view)},
        {"role": "user", "content": user_text(texts, chunk)},
    ]
    return with_tool_block(plain, trained_tools(texts.including_core))


# ---- reading the output -----------------------------------------------------------------------


def parse(text: str) -> list[ToolCall]:
    """The calls in `text`, as Mem-α finds them, in order. A `✿FUNCTION✿` the regex skips (its
    arguments hold a ✿, or it has no `✿ARGS✿`) is returned as a call with `error` set, so what
    Mem-α drops silently is at least seen in the job's calls."""
    matched = {m.start(): m for m in CALL.finditer(text)}
    calls = []
    for start in (m.start() for m in re.finditer(re.escape(FN_NAME), text)):
        match = matched.get(start)
        if match is None:
            snippet = text[start : start + 200]
            calls.append(
                ToolCall(
                    "", {}, snippet, "not a call Mem-α's parser reads (a ✿ in its arguments, or no ✿ARGS✿); not run"
                )
            )
            continue
        name, raw = match.group(1).strip(), _trim_args(match.group(2).strip())
        calls.append(_decoded(name, raw))
    return calls


def _trim_args(raw: str) -> str:
    """Mem-α's `_remove_trailing_comment_of_fn_args`: an object ends at its last '}'."""
    if raw.startswith("{"):
        end = raw.rfind("}")
        if end > 0:
            raw = raw[: end + 1]
    if raw.startswith("```"):
        end = raw.rfind("\n```")
        if end > 0:
            raw = raw[: end + 4]
    return raw


def _decoded(name: str, raw: str) -> ToolCall:
    from json_repair import repair_json

    try:
        arguments = json.loads(repair_json(raw))
    except ValueError as exc:
        return ToolCall(name, {}, raw, f"arguments: not JSON even after repair ({exc})")
    if not isinstance(arguments, dict):
        return ToolCall(name, {}, raw, "arguments: not a JSON object")
    return ToolCall(name, arguments, raw)


# ---- running a call ---------------------------------------------------------------------------


@dataclass
class Chunk:
    """Per-prompt state: the view (and its aliases) and the contents inserted so far."""

    view: MemoryView
    texts: PromptTexts
    timestamp: str | None = None  # the chunk's: the event time of its episodic inserts (not shown)
    inserted: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, content) -> real id
    deleted: set[str] = field(default_factory=set)


def run_call(call: ToolCall, chunk: Chunk, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
    """Run one parsed call with the semantics Memalpha-4B was trained on; returns the arguments as
    run on our tools and the outcome. Each departure from a plain call says so in the outcome."""
    arguments = dict(call.arguments)
    tool = next((t for t in trained_tools(chunk.texts.including_core) if t["name"] == call.name), None)
    if tool is None:
        return arguments, CallOutcome(False, error=f"name: {call.name!r} is not one of {', '.join(WRITE_TOOL_NAMES)}")
    schema = tool["parameters"]
    ignored = sorted(set(arguments) - set(schema["properties"]))
    for key in ignored:  # Mem-α's tools read only their own keys
        arguments.pop(key)
    missing = [key for key in schema["required"] if key not in arguments]
    if missing:
        return arguments, CallOutcome(False, error=f"{missing[0]}: missing (required by {call.name})")
    kinds = schema["properties"]["memory_type"]["enum"]
    if arguments["memory_type"] not in kinds:
        return arguments, CallOutcome(
            False, error=f"memory_type: {arguments['memory_type']!r} is not one of {', '.join(kinds)}"
        )
    kind = str(arguments["memory_type"]).removesuffix("_memory")
    if kind == "core" and "memory_id" in arguments:  # ignored for core memory, as the schema says
        ignored.append("memory_id")
        arguments.pop("memory_id")
    runner = {"new_memory_insert": _insert, "memory_update": _update, "memory_delete": _delete}[call.name]
    arguments, outcome = runner(kind, arguments, chunk, execute)
    if ignored and outcome.ok and isinstance(outcome.output, dict):
        outcome = CallOutcome(True, {**outcome.output, "ignored_arguments": ignored})
    elif ignored and not outcome.ok:
        outcome = CallOutcome(False, error=f"{outcome.error} (ignored arguments: {', '.join(ignored)})")
    return arguments, outcome


def _real_id(alias: Any, chunk: Chunk) -> str | None:
    return chunk.view.aliases.get(alias) if isinstance(alias, str) else None


def _insert(kind: str, arguments: dict[str, Any], chunk: Chunk, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
    content = arguments["content"]
    call = {"memory_type": kind, "content": content}
    if kind == "episodic" and chunk.timestamp:  # the event happened in that conversation
        call["timestamp"] = chunk.timestamp
    duplicate = _duplicate(kind, content, chunk, execute) if isinstance(content, str) else None
    if duplicate is not None:  # Mem-α skips an exact duplicate of its type
        return call, CallOutcome(True, {"status": "skipped", "reason": "exact duplicate", "duplicate_of": duplicate})
    outcome = execute("new_memory_insert", call)
    if outcome.ok and isinstance(outcome.output, dict):
        chunk.inserted[(kind, content)] = outcome.output["memory_id"]
    return call, outcome


def _duplicate(kind: str, content: str, chunk: Chunk, execute: Execute) -> str | None:
    """The id of a live item of `kind` holding exactly `content`: one shown, one inserted by this
    prompt, or one of the `DUPLICATE_SEARCH` best keyword matches (read whole with memory_get)."""
    known = chunk.inserted.get((kind, content)) or chunk.view.content_of(kind, content, chunk.deleted)
    if known is not None:
        return known
    found = execute(
        "search_memory",
        {
            "query": content,
            "memory_type": kind,
            "search_method": "bm25",
            "top_k": DUPLICATE_SEARCH,
            "excerpt_tokens": 0,
        },
    )
    ids = (
        [hit["memory_id"] for hit in found.output.get("results", [])]
        if found.ok and isinstance(found.output, dict)
        else []
    )
    if not ids:
        return None
    got = execute("memory_get", {"memory_ids": ids})
    rows = got.output.get("memories", []) if got.ok and isinstance(got.output, dict) else []
    return next((row["memory_id"] for row in rows if row["content"] == content and row["memory_type"] == kind), None)


def _update(kind: str, arguments: dict[str, Any], chunk: Chunk, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
    content = arguments["new_content"]
    if kind == "core":
        return _update_core(content, execute)
    alias = arguments.get("memory_id")
    real = _real_id(alias, chunk)
    call = {"memory_type": kind, "new_content": content, "memory_id": real or alias}  # the model's alias when unknown
    if real is None:
        return call, CallOutcome(False, error=f"memory_id: {alias!r} is not an id this prompt showed")
    return call, execute("memory_update", call)


def _update_core(content: Any, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
    """Replace the core; one over capacity is cut at a word and marked, as Mem-α does, and the
    outcome says so. The tool's refusal states the size (in tokens, or in characters for a text
    far over), so each try keeps the share of words that should fit; only the try that fits writes
    (one version in history)."""
    call = {"memory_type": "core", "new_content": content}
    outcome = execute("memory_update", call)
    over = _over_capacity(outcome)
    if over is None or not isinstance(content, str):
        return call, outcome
    marker = TRUNCATED.format(limit=_core_capacity(execute))
    words = content.split(" ")
    keep = len(words)
    while keep > 1 and over is not None:
        size, limit = over
        keep = max(1, min(keep - 1, keep * limit // size))
        attempt = {"memory_type": "core", "new_content": " ".join(words[:keep]) + marker}
        tried = execute("memory_update", attempt)
        if tried.ok and isinstance(tried.output, dict):
            note = {"truncated": True, "words_kept": keep, "words_given": len(words)}
            return attempt, CallOutcome(True, {**tried.output, **note})
        over = _over_capacity(tried)
        if over is None:
            return attempt, tried
    return call, outcome


def _core_capacity(execute: Execute) -> int:
    """The core's limit in tokens, which Mem-α's marker states."""
    read = execute("core_memory_read", {})
    return int(read.output["capacity_tokens"]) if read.ok and isinstance(read.output, dict) else 512


def _over_capacity(outcome: CallOutcome) -> tuple[int, int] | None:
    """(size, limit) from a refusal for capacity (`CapacityExceeded`'s message), else None."""
    pattern = r"is (\d+) (tokens|characters), over the limit of (\d+) \2"
    found = None if outcome.ok else re.search(pattern, outcome.error or "")
    return (int(found.group(1)), int(found.group(3))) if found else None


def _delete(kind: str, arguments: dict[str, Any], chunk: Chunk, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
    if kind == "core":
        return {"memory_type": "core"}, execute("memory_delete", {"memory_type": "core"})
    alias = arguments.get("memory_id")
    real = _real_id(alias, chunk)
    call: dict[str, Any] = {"memory_type": kind, "memory_id": real or alias}  # the model's alias when unknown
    if real is None or real in chunk.deleted:  # Mem-α deletes the first item with that id: none, and says ok
        reason = f"no memory shown in this prompt has id {alias!r}" if real is None else "already deleted by this reply"
        return call, CallOutcome(True, {"status": "ok", "deleted": False, "reason": reason})
    outcome = execute("memory_delete", call)
    if outcome.ok:
        chunk.deleted.add(real)
    return call, outcome
