"""Wire formats: how tools are shown to a model, how its calls are read back, how results return.

- `memalpha`: Qwen-Agent's text protocol that Memalpha-4B was trained on (`✿FUNCTION✿: name`
  then `✿ARGS✿: {json}`), tools rendered into the system message.
- `tool_call`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Hermes / Qwen2.5+).
- `json`: for small models that follow no format: the output is forced by a grammar to be
  `{"calls": [...]}` with only valid tool names and argument shapes. By default the content of a
  memory must be one of the chunk's own statements (extractive): a 135M model asked to write
  freely invents facts, and a memory that lies is worse than none.

Parsing is tolerant (json-repair mends truncated or sloppy JSON); a call that still cannot be read
becomes a `ToolCall` with `error` set, which the curator reports instead of executing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from mcp_memalpha.policy import memalpha
from mcp_memalpha.policy.calls import CallOutcome, CallRecord, Execute, ToolCall, ToolDef
from mcp_memalpha.policy.generation import Sampling
from mcp_memalpha.policy.memalpha import DEFAULT_TEXTS, PromptTexts
from mcp_memalpha.policy.prompt import INSTRUCTIONS, ChunkContext, chunk_message, memory_section, read_context

WRITE_TOOLS = ("new_memory_insert", "memory_update", "memory_delete")
# Given the output so far, the text every valid output continues it with ("" when the model has a
# choice): the generator feeds that text in one batch instead of decoding it token by token.
Continuation = Callable[[str], str]
# Given the output so far, the possible rests of its current line and whether it may end there.
Completions = Callable[[str], tuple[list[str], bool]]


def fixed_text(completions: Completions, text: str) -> str:
    """The text every valid continuation of `text` starts with ("" where the model has a choice)."""
    return shared_text(*completions(text))


def shared_text(rests: list[str], may_end: bool) -> str:
    """The text all of `rests` start with; "" when the output may also end here."""
    if may_end or not rests:
        return ""
    return os.path.commonprefix(rests)  # noqa: RUF071 (characters, not path components)


TRAINED_NEW_TOKENS = 2048  # Memalpha-4B's max_tokens at inference and max_response_length in training


@dataclass(frozen=True)
class Decoding:
    """How a format is decoded: new tokens per step, sampling, calls per chunk (None: only the
    tokens bound them) and whether a repetitive tail is cut off."""

    max_new_tokens: int
    sampling: Sampling
    max_calls: int | None
    cut_degenerate: bool = True


class WireFormat(Protocol):
    name: str
    multi_step: bool  # whether tool results are shown back for another step
    runs_repeats: bool  # whether a repeat of an earlier call of the chunk runs again (else refused)

    def tool_names(self, tools: Sequence[ToolDef]) -> tuple[str, ...]: ...

    def read(self, chunk: str, timestamp: str | None, execute: Execute) -> ChunkContext: ...

    def run(self, call: ToolCall, context: ChunkContext, execute: Execute) -> tuple[dict[str, Any], CallOutcome]: ...

    def decoding(self, limits: Any, sampling: Sampling) -> Decoding: ...

    def nothing_to_do(self, context: ChunkContext) -> bool: ...

    # What the prompt shows of the memory, as texts a budget may cut (mcp_memalpha.policy.budget): `shown` lists
    # them, `showing` puts cut ones in their place (None: nothing shown), `cut_marker` ends a cut one.
    def shown(self, context: ChunkContext) -> list[str]: ...

    def showing(self, context: ChunkContext, texts: list[str] | None) -> ChunkContext: ...

    def cut_marker(self, cap: int) -> str: ...

    def messages(self, tools: Sequence[ToolDef], context: ChunkContext) -> list[dict[str, str]]: ...

    def grammar(self, tools: Sequence[ToolDef], context: ChunkContext, max_calls: int) -> str | None: ...

    def continuation(self, tools: Sequence[ToolDef], context: ChunkContext) -> Continuation | None: ...

    def completions(self, tools: Sequence[ToolDef], context: ChunkContext) -> Completions | None: ...

    def stop(self) -> tuple[str, ...]: ...

    def parse(self, text: str) -> list[ToolCall]: ...

    def results(self, records: Sequence[CallRecord]) -> str: ...


def _loads(raw: str) -> Any:
    """JSON, repaired when it is obviously broken (trailing commas, missing quotes or brackets)."""
    import json_repair

    try:
        return json.loads(raw)
    except ValueError:
        return json_repair.loads(raw)


def _call_from(obj: Any, raw: str) -> ToolCall:
    """{"name": ..., "arguments": {...}} (arguments possibly a JSON string) -> ToolCall."""
    if not isinstance(obj, dict):
        return ToolCall("", {}, raw, "not a JSON object with 'name' and 'arguments'")
    name = obj.get("name") or obj.get("function") or obj.get("tool")
    arguments = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(arguments, str):
        arguments = _loads(arguments) if arguments.strip() else {}
        if not isinstance(arguments, dict):
            return ToolCall(name if isinstance(name, str) else "", {}, raw, "the arguments are not a JSON object")
    if not isinstance(name, str) or not name:
        return ToolCall("", {}, raw, "the call names no tool")
    if not isinstance(arguments, dict):
        return ToolCall(name, {}, raw, "the arguments are not a JSON object")
    return ToolCall(name, arguments, raw)


def _result_text(record: CallRecord, limit: int = 1500) -> str:
    payload = record.output if record.ok else {"error": record.error}
    text = json.dumps(payload, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


class _OurTools:
    """What `tool_call` and `json` share: our own prompt with the related memories, our tools' schemas,
    calls run as given (an episodic insert dated by the chunk), the server's limits."""

    runs_repeats = False

    def tool_names(self, tools: Sequence[ToolDef]) -> tuple[str, ...]:
        return tuple(t.name for t in tools)

    def read(self, chunk: str, timestamp: str | None, execute: Execute) -> ChunkContext:
        return read_context(chunk, timestamp, execute)

    def run(self, call: ToolCall, context: ChunkContext, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
        arguments = with_event_time(call, context.timestamp)
        return arguments, execute(call.name, arguments)

    def decoding(self, limits: Any, sampling: Sampling) -> Decoding:
        return Decoding(limits.max_new_tokens, sampling, limits.max_calls)

    def nothing_to_do(self, context: ChunkContext) -> bool:
        return False

    def shown(self, context: ChunkContext) -> list[str]:
        return [context.core, *(item.text for item in context.related)]

    def showing(self, context: ChunkContext, texts: list[str] | None) -> ChunkContext:
        if texts is None:
            return replace(context, core="", related=())
        related = tuple(replace(item, text=text) for item, text in zip(context.related, texts[1:], strict=True))
        return replace(context, core=texts[0], related=related)

    def cut_marker(self, cap: int) -> str:
        return CUT_MARKER


CUT_MARKER = " [… cut to fit the prompt]"


def with_event_time(call: ToolCall, timestamp: str | None) -> dict[str, Any]:
    """An episodic insert without a time gets the chunk's: the event happened in that conversation."""
    arguments = dict(call.arguments)
    memory_type = str(arguments.get("memory_type", ""))
    if (
        timestamp
        and call.name == "new_memory_insert"
        and memory_type.startswith("episodic")
        and not arguments.get("timestamp")
    ):
        arguments["timestamp"] = timestamp
    return arguments


def _tool_list(tools: Sequence[ToolDef]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]


class MemalphaFormat:
    """The input Memalpha-4B was trained on and its output read as Mem-α reads it (`mcp_memalpha.policy.memalpha`):
    one generation per chunk, greedy, 2048 new tokens, no repetition penalty, EOS the only stop,
    results never shown back, no cap on the calls but the tokens."""

    name = "memalpha"
    multi_step = False
    runs_repeats = True  # as in Mem-α: a repeated insert is skipped as a duplicate, a repeated delete deletes nothing

    def __init__(self, texts: PromptTexts | None = None, *, alias: memalpha.Alias = memalpha.hex_alias) -> None:
        self.texts = texts or DEFAULT_TEXTS
        self.alias = alias

    def tool_names(self, tools: Sequence[ToolDef]) -> tuple[str, ...]:
        return memalpha.WRITE_TOOL_NAMES

    def read(self, chunk: str, timestamp: str | None, execute: Execute) -> ChunkContext:
        view = memalpha.read_view(execute, self.texts, self.alias)
        return ChunkContext(chunk, timestamp, view.core, state=memalpha.Chunk(view, self.texts, timestamp))

    def messages(self, tools: Sequence[ToolDef], context: ChunkContext) -> list[dict[str, str]]:
        return memalpha.messages(self.texts, self._state(context).view, context.chunk)

    def run(self, call: ToolCall, context: ChunkContext, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
        return memalpha.run_call(call, self._state(context), execute)

    def _state(self, context: ChunkContext) -> memalpha.Chunk:
        """The view `read` made; a context made elsewhere shows its core and no items (no aliases)."""
        if isinstance(context.state, memalpha.Chunk):
            return context.state
        empty = memalpha.MemoryView(context.core, {}, {})
        return memalpha.Chunk(empty, self.texts)

    def shown(self, context: ChunkContext) -> list[str]:
        view = self._state(context).view
        core = view.core if self.texts.including_core else ""  # a core the prompt does not show costs nothing
        return [core, *(item.content for items in view.shown.values() for item in items)]

    def showing(self, context: ChunkContext, texts: list[str] | None) -> ChunkContext:
        chunk = self._state(context)
        view = memalpha.shown_as(chunk.view, texts)
        return replace(context, core=view.core, state=replace(chunk, view=view))

    def cut_marker(self, cap: int) -> str:
        return memalpha.TRUNCATED.format(limit=cap)  # Mem-α's own marker for a cut core

    def decoding(self, limits: Any, sampling: Sampling) -> Decoding:
        return Decoding(TRAINED_NEW_TOKENS, Sampling(temperature=0.0, repeat_penalty=1.0), None, cut_degenerate=False)

    def nothing_to_do(self, context: ChunkContext) -> bool:
        return False

    def grammar(self, tools: Sequence[ToolDef], context: ChunkContext, max_calls: int) -> str | None:
        return None

    def continuation(self, tools: Sequence[ToolDef], context: ChunkContext) -> Continuation | None:
        return None

    def completions(self, tools: Sequence[ToolDef], context: ChunkContext) -> Completions | None:
        return None

    def stop(self) -> tuple[str, ...]:
        return ()  # EOS only, as trained: invented ✿RESULT✿ lines are ignored by the parser

    def parse(self, text: str) -> list[ToolCall]:
        return memalpha.parse(text)

    def results(self, records: Sequence[CallRecord]) -> str:
        return "\n".join(f"{memalpha.FN_RESULT}: {_result_text(r)}" for r in records)


class ToolCallFormat(_OurTools):
    """`<tool_call>` JSON blocks, the Hermes convention most tool-trained models follow."""

    name = "tool_call"
    multi_step = True
    _BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)

    def messages(self, tools: Sequence[ToolDef], context: ChunkContext) -> list[dict[str, str]]:
        listing = "\n".join(
            json.dumps({"type": "function", "function": t}, ensure_ascii=False) for t in _tool_list(tools)
        )
        system = (
            f"{INSTRUCTIONS}\n\n{memory_section(context)}\n\n# Tools\n\nYou may call one or more functions. "
            f"The functions are listed within <tools></tools>:\n<tools>\n{listing}\n</tools>\n\n"
            "For each call, return a JSON object with the function name and arguments within <tool_call></tool_call> "
            'tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": chunk_message(context)}]

    def grammar(self, tools: Sequence[ToolDef], context: ChunkContext, max_calls: int) -> str | None:
        return None

    def continuation(self, tools: Sequence[ToolDef], context: ChunkContext) -> Continuation | None:
        return None

    def completions(self, tools: Sequence[ToolDef], context: ChunkContext) -> Completions | None:
        return None

    def stop(self) -> tuple[str, ...]:
        return ("<tool_response>",)

    def parse(self, text: str) -> list[ToolCall]:
        blocks = self._BLOCK.findall(text)
        if not blocks and text.strip().startswith("{"):
            blocks = [text.strip()]  # a bare JSON call without the tags
        return [_call_from(_loads(block), block) for block in blocks if block.strip()]

    def results(self, records: Sequence[CallRecord]) -> str:
        return "\n".join(f"<tool_response>\n{_result_text(r)}\n</tool_response>" for r in records)


EXAMPLE_CHUNK = """Tom: Hi Ana! I just got back from my trip to Kyoto last week.
Ana: Welcome back! I adopted a puppy named Biscuit on Saturday.
Tom: Lovely. I'm still working as a nurse at the city hospital."""
EXAMPLE_CALLS = [
    {
        "name": "new_memory_insert",
        "arguments": {
            "memory_type": "episodic",
            "content": "Tom: Hi Ana! I just got back from my trip to Kyoto last week.",
        },
    },
    {
        "name": "new_memory_insert",
        "arguments": {
            "memory_type": "episodic",
            "content": "Ana: Welcome back! I adopted a puppy named Biscuit on Saturday.",
        },
    },
    {
        "name": "new_memory_insert",
        "arguments": {
            "memory_type": "semantic",
            "content": "Tom: Lovely. I'm still working as a nurse at the city hospital.",
        },
    },
]


class JsonFormat(_OurTools):
    """Grammar-constrained JSON calls for small models, one call per line; extractive by default.

    Extractive: the grammar lets the model copy each of the chunk's statements at most once, in the
    chunk's order, into an insert (choosing episodic or semantic), then optionally update a stored
    memory by its id. So its output is always valid, never repeats itself and never invents a fact;
    what it decides is what to keep and where (it still sees the related memories, so it can skip
    what is already stored). `json-free` lets it write its own sentences instead,
    bounded by a JSON schema (better for larger models).
    """

    name = "json"
    multi_step = False  # everything it needs is in the prompt; a second pass only duplicates

    def __init__(self, *, extractive: bool = True, max_content_chars: int = 300) -> None:
        self.extractive = extractive
        self.max_content_chars = max_content_chars

    def messages(self, tools: Sequence[ToolDef], context: ChunkContext) -> list[dict[str, str]]:
        how = (
            "copy the statement from the conversation word for word"
            if self.extractive
            else "write one short sentence that names the person"
        )
        # Instructions and example first, memory and chunk last: the unchanging prefix stays in
        # llama.cpp's cache from one chunk to the next, so only the new part is evaluated.
        system = (
            f"{INSTRUCTIONS}\n\nAnswer with one JSON tool call per line, such as "
            '{"name": "new_memory_insert", "arguments": {"memory_type": "episodic", "content": "..."}}. '
            ""
            f"For content, {how}."
        )
        example = ChunkContext.build(EXAMPLE_CHUNK, "2 March 2023", "", ())
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": f"{memory_section(example)}\n\n{chunk_message(example)}"},
            {"role": "assistant", "content": "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in EXAMPLE_CALLS)},
            {"role": "user", "content": f"{memory_section(context)}\n\n{chunk_message(context)}"},
        ]

    def nothing_to_do(self, context: ChunkContext) -> bool:
        """Extractive with no statement to copy (a chunk of headers only): never free writing instead,
        which would let the model invent what the chunk does not say."""
        return self.extractive and not context.lines

    def _copies(self, tools: Sequence[ToolDef], context: ChunkContext) -> bool:
        """Whether this chunk is curated extractively (there are statements and an insert tool)."""
        return self.extractive and bool(context.lines) and any(t.name == "new_memory_insert" for t in tools)

    def grammar(self, tools: Sequence[ToolDef], context: ChunkContext, max_calls: int) -> str | None:
        if self._copies(tools, context):
            return self._extractive_grammar(context)
        if self.extractive:
            raise ValueError(
                "the extractive json format copies statements with new_memory_insert, which is not offered"
            )
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        return json_schema_to_gbnf(json.dumps(self.schema(tools, context, max_calls)))

    def _extractive_grammar(self, context: ChunkContext) -> str:
        """GBNF: each statement optionally, once, in order, as an episodic or semantic insert.

        No updates here: copied statements hold no rewritten fact to correct, and in our trials
        SmolLM2-135M's updates overwrote unrelated memories with new statements."""
        rules = ["kind ::= " + " | ".join(_gbnf_literal(f'"{kind}"') for kind in EXTRACTIVE_KINDS)]
        inserts = []
        for i, line in enumerate(context.lines):
            rules.append(f"s{i} ::= {_gbnf_literal(EXTRACTIVE_HEAD)} kind {_gbnf_literal(_extractive_tail(line))}")
            inserts.append(f"s{i}?")
        return "\n".join([f"root ::= {' '.join(inserts)}", *rules]) + "\n"

    def completions(self, tools: Sequence[ToolDef], context: ChunkContext) -> Completions | None:
        """For the extractive grammar, what may follow an output `text`: the possible rests of its
        current line, and whether it may end there (only between calls). None when not extractive."""
        if not self._copies(tools, context):
            return None
        lines = [[extractive_call(line, kind) for kind in EXTRACTIVE_KINDS] for line in context.lines]
        index = {call: i for i, calls in enumerate(lines) for call in calls}

        def rests(text: str) -> tuple[list[str], bool]:
            *done, current = text.split("\n")
            after = max((index.get(call + "\n", -1) for call in done), default=-1)  # statements go in order
            later = [call[len(current) :] for calls in lines[after + 1 :] for call in calls if call.startswith(current)]
            return later, not current

        return rests

    def continuation(self, tools: Sequence[ToolDef], context: ChunkContext) -> Continuation | None:
        """For the extractive grammar: once the model has begun a call (or a statement, or a kind),
        the rest is fixed until its next choice, so it is fed rather than decoded: the model only
        decides whether to add a call, of which kind, and which statement it copies."""
        completions = self.completions(tools, context)
        return None if completions is None else partial(fixed_text, completions)

    def schema(self, tools: Sequence[ToolDef], context: ChunkContext, max_calls: int) -> dict[str, Any]:
        """JSON schema of a list of free-writing calls: only the write tools offered, only real ids."""
        names = {t.name for t in tools}
        content = {"type": "string", "minLength": 8, "maxLength": self.max_content_chars}
        kinds = {"enum": ["episodic", "semantic"]}
        shapes = []
        if "new_memory_insert" in names:
            shapes.append(_call_schema("new_memory_insert", {"memory_type": kinds, "content": content}))
        ids = [item.memory_id for item in context.related]
        if ids and "memory_update" in names:
            shapes.append(
                _call_schema(
                    "memory_update", {"memory_type": kinds, "memory_id": {"enum": ids}, "new_content": content}
                )
            )
        if ids and "memory_delete" in names:
            shapes.append(_call_schema("memory_delete", {"memory_type": kinds, "memory_id": {"enum": ids}}))
        return {"type": "array", "items": {"anyOf": shapes}, "maxItems": max_calls}

    def stop(self) -> tuple[str, ...]:
        return ()

    def parse(self, text: str) -> list[ToolCall]:
        """One call per line; also accepts a JSON array or {"calls": [...]} of calls."""
        stripped = text.strip()
        if not stripped:
            return []
        if stripped.startswith("["):
            whole = _loads(stripped)
            return [_call_from(call, json.dumps(call, ensure_ascii=False)) for call in whole or []]
        if stripped.startswith('{"calls"'):
            whole = _loads(stripped)
            calls = whole.get("calls") if isinstance(whole, dict) else None
            if isinstance(calls, list):
                return [_call_from(call, json.dumps(call, ensure_ascii=False)) for call in calls]
        calls = [_call_from(_loads(line), line) for line in stripped.splitlines() if line.strip()]
        if self.extractive and calls and calls[-1].error is None and not calls[-1].raw.rstrip().endswith("}"):
            # an unclosed last call is a copy cut off by the token limit: json-repair would close it,
            # but half a statement is not what the chunk said
            last = calls[-1]
            calls[-1] = ToolCall(last.name, last.arguments, last.raw, "cut off at the token limit; not run")
        return calls

    def results(self, records: Sequence[CallRecord]) -> str:
        return json.dumps([{"name": r.name, "result": _result_text(r)} for r in records], ensure_ascii=False)


EXTRACTIVE_HEAD = '{"name": "new_memory_insert", "arguments": {"memory_type": '
EXTRACTIVE_KINDS = ("episodic", "semantic")


def _extractive_tail(line: str) -> str:
    return f', "content": {json.dumps(line, ensure_ascii=False)}}}}}\n'


def extractive_call(line: str, kind: str) -> str:
    """The extractive json format's line that inserts statement `line` as a `kind` memory."""
    return EXTRACTIVE_HEAD + f'"{kind}"' + _extractive_tail(line)


def _gbnf_literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _call_schema(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": name},
            "arguments": {
                "type": "object",
                "properties": arguments,
                "required": list(arguments),
                "additionalProperties": False,
            },
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


FORMATS = ("memalpha", "tool_call", "json")


def make_format(name: str, *, texts: PromptTexts | None = None) -> WireFormat:
    """The format `name`; `texts` are the memalpha format's instruction texts (default: ours)."""
    if name == "memalpha":
        return MemalphaFormat(texts)
    if name == "tool_call":
        return ToolCallFormat()
    if name == "json":
        return JsonFormat()
    if name == "json-free":
        return JsonFormat(extractive=False)
    raise ValueError(f"policy_format: {name!r} is not one of memalpha, tool_call, json, json-free")
