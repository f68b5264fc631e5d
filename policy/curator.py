"""The curator: turns one conversation chunk into memory writes through the tools it is handed.

Per chunk: read the current core and search the stored memories most related to the chunk (real
tool calls through `execute`), prompt the model in its wire format, parse its calls, execute them
in order, and, for formats that support it, show the results back for another step. Everything
is bounded by `Limits`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policy.calls import CallRecord, CurationResult, Execute, ToolCall, ToolDef
from policy.formats import WRITE_TOOLS, WireFormat, make_format
from policy.generation import Generator, Sampling
from policy.model import ModelInfo, load_llama, render_chat, resolve_format, resolve_model
from policy.prompt import ChunkContext, Related

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

RELATED_ITEMS = 8  # stored memories shown to the writer
QUERY_CHARS = 1500  # of the chunk, used as the search query for related memories


@dataclass(frozen=True)
class Limits:
    """Bounds on the work of one chunk (all configurable from the server settings)."""

    max_chunk_tokens: int = 2048
    max_calls: int = 12
    max_steps: int = 3
    max_new_tokens: int = 512


class ChunkTooLong(ValueError):
    """The chunk has more tokens, by the model's own tokenizer, than the curator's limit."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(
            f"chunk: is {tokens} tokens, over the limit of {limit} (counted with the curator model's tokenizer); "
            "split it into smaller chunks"
        )


class Curator:
    """One loaded model, its wire format and limits; `curate` may be called many times."""

    def __init__(
        self,
        llm: Llama,
        tools: Sequence[ToolDef],
        *,
        wire_format: str | None = None,
        limits: Limits | None = None,
        sampling: Sampling | None = None,
    ) -> None:
        self.info = ModelInfo.of(llm)
        self.generator = Generator(llm)
        self.tools = [t for t in tools if t.name in (*WRITE_TOOLS, "search_memory")]
        self.tool_names = tuple(t.name for t in self.tools)
        self.format_choice = resolve_format(self.info, wire_format)
        self.format_name = self.format_choice.name
        log.info("curator model %r: wire format %s (%s)", self.info.name, self.format_name, self.format_choice.reason)
        self.format: WireFormat = make_format(self.format_name)
        self.limits = limits or Limits()
        self.sampling = sampling or Sampling()

    def curate(
        self,
        chunk: str,
        *,
        timestamp: str | None = None,
        execute: Execute,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> CurationResult:
        started = time.perf_counter()
        tokens = self.generator.count_tokens(chunk)
        if tokens > self.limits.max_chunk_tokens:
            raise ChunkTooLong(tokens, self.limits.max_chunk_tokens)
        context = read_context(chunk, timestamp, execute)
        messages = self.format.messages(self.tools, context)
        result = CurationResult(wire_format=self.format_name, wire_format_reason=self.format_choice.reason)
        steps = self.limits.max_steps if self.format.multi_step else 1
        for step in range(1, steps + 1):
            generated = self.generator.generate(
                render_chat(self.info, messages),
                max_tokens=self.limits.max_new_tokens,
                grammar=self.format.grammar(self.tools, context, self.limits.max_calls - len(result.calls)),
                stop=self.format.stop(),
                sampling=self.sampling,
                continuation=self.format.continuation(self.tools, context),
            )
            result.steps = step
            result.outputs.append(generated.text)
            result.prompt_tokens += generated.prompt_tokens
            result.completion_tokens += generated.completion_tokens
            result.degenerate |= generated.degenerate
            calls = self.format.parse(generated.text)
            records = run_calls(step, calls, self.tool_names, self.limits.max_calls, context, execute, result, on_call)
            if not records or not needs_results(records) or len(result.calls) >= self.limits.max_calls:
                break
            messages += [
                {"role": "assistant", "content": generated.text},
                {"role": "user", "content": self.format.results(records)},
            ]
        result.seconds = time.perf_counter() - started
        return result


def read_context(chunk: str, timestamp: str | None, execute: Execute) -> ChunkContext:
    """Core and the related memories, read through the same tools a client uses (public so a
    training rollout prompts exactly as the curator does)."""
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


def run_calls(
    step: int,
    calls: list[ToolCall],
    allowed: Sequence[str],
    max_calls: int,
    context: ChunkContext,
    execute: Execute,
    result: CurationResult,
    on_call: Callable[[CallRecord], None] | None = None,
) -> list[CallRecord]:
    """Execute parsed calls in order, up to `max_calls` for the chunk: an unparsed call, an
    unknown tool or a repeat of an earlier call of the chunk is recorded with its error, never
    executed. Appends to `result.calls`."""
    records = []
    seen = {_call_key(r.name, r.arguments) for r in result.calls}
    for call in calls:
        if len(result.calls) >= max_calls:
            break
        key = _call_key(call.name, call.arguments)
        if call.error is None and call.name not in allowed:
            call = ToolCall(call.name, call.arguments, call.raw, f"unknown tool; the tools are {', '.join(allowed)}")
        elif call.error is None and key in seen:
            call = ToolCall(call.name, call.arguments, call.raw, "repeats an earlier call of this chunk; not run again")
        seen.add(key)
        if call.error is not None:
            record = CallRecord(step, call.name, call.arguments, False, error=call.error)
        else:
            arguments = _with_event_time(call, context.timestamp)
            outcome = execute(call.name, arguments)
            record = CallRecord(step, call.name, arguments, outcome.ok, outcome.output, outcome.error)
        result.calls.append(record)
        records.append(record)
        if on_call is not None:
            on_call(record)
    return records


def _call_key(name: str, arguments: dict[str, Any]) -> str:
    return name + json.dumps(arguments, sort_keys=True, default=str)


def _with_event_time(call: ToolCall, timestamp: str | None) -> dict[str, Any]:
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


def needs_results(records: list[CallRecord]) -> bool:
    """Another step only helps when the model must see something: a search or a refused call."""
    return any(r.name == "search_memory" or not r.ok for r in records)


def load_curator(
    model: str = "default",
    *,
    tools: Sequence[ToolDef],
    wire_format: str | None = None,
    limits: Limits | None = None,
    sampling: Sampling | None = None,
    threads: int | None = None,
) -> Curator:
    """Load `model` ('default' = the embedded SmolLM2-135M-Instruct, or a GGUF path)."""
    limits = limits or Limits()
    # room for the instructions, the related memories, the chunk and the answer, with all steps
    n_ctx = min(32768, 2048 + 2 * limits.max_chunk_tokens + limits.max_steps * limits.max_new_tokens)
    llm = load_llama(resolve_model(model), n_ctx=n_ctx, threads=threads)
    return Curator(llm, tools, wire_format=wire_format, limits=limits, sampling=sampling)
