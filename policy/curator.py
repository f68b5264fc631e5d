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
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mcp_memalpha.policy.budget import Budget, fit_memory, split_chunk
from mcp_memalpha.policy.calls import CallOutcome, CallRecord, CurationResult, Execute, ToolCall, ToolDef
from mcp_memalpha.policy.formats import (
    TRAINED_NEW_TOKENS,
    WRITE_TOOLS,
    Completions,
    Continuation,
    WireFormat,
    make_format,
    with_event_time,
)
from mcp_memalpha.policy.generation import Generator, Sampling
from mcp_memalpha.policy.memalpha import PromptTexts
from mcp_memalpha.policy.model import ModelInfo, load_llama, render_chat, resolve_format, resolve_policy
from mcp_memalpha.policy.prompt import ChunkContext

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Bounds on the work of one chunk (all configurable from the server settings)."""

    max_chunk_tokens: int = 2048
    max_calls: int = 12
    max_steps: int = 3
    max_new_tokens: int = 512


class ChunkTooLong(ValueError):
    """The curator's context has no room for any of the chunk (a configuration too small for its
    instructions and answer): a chunk over the limit is split, never refused."""

    def __init__(self, room: int, n_ctx: int, reserve: int) -> None:
        super().__init__(
            f"chunk: the curator's {n_ctx}-token context leaves {room} tokens for a chunk after its instructions "
            f"and the {reserve} tokens reserved for its answer; give it a longer context (policy_max_chunk_tokens "
            "sizes it) or fewer new tokens"
        )


MIN_PART_TOKENS = 16  # the smallest room for a part of a chunk that is worth a generation


class ChunkSession:
    """One chunk's curation, generation by generation: the one step loop the server's curator and a
    training episode share. Reads the memory the format shows (through `execute`), gives the
    messages to complete, and for each completion parses, runs and records the calls, then says
    whether another step follows (only for formats that show results back)."""

    def __init__(
        self,
        wire_format: WireFormat,
        tools: Sequence[ToolDef],
        limits: Limits,
        chunk: str,
        timestamp: str | None,
        execute: Execute,
        *,
        sampling: Sampling | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.format = wire_format
        self.tools = list(tools)
        self.limits = limits
        self.decoding = wire_format.decoding(limits, sampling or Sampling())
        self.execute = execute
        self.on_call = on_call
        self.context = wire_format.read(chunk, timestamp, execute)
        self.result = CurationResult()
        if budget is None:  # no tokenizer to count with (a training rollout): the format's prompt as is
            self.messages: list[dict[str, str]] = wire_format.messages(self.tools, self.context)
        else:  # what is shown of the memory cut to the budget, only when the prompt is over it
            self.context, self.messages, cut = fit_memory(wire_format, self.tools, self.context, budget)
            if cut is not None:
                log.info("curator prompt over its %d-token budget: the memory shown was cut (%s)", budget.limit, cut)
                self.result.cuts.append(asdict(cut))
        self.step = 1
        # an extractive chunk without statements is a job with nothing to do: no model call at all
        self.done = wire_format.nothing_to_do(self.context)
        self._max_steps = limits.max_steps if wire_format.multi_step else 1

    def calls_left(self) -> int:
        cap = self.decoding.max_calls
        return MAX_CALLS_UNBOUNDED if cap is None else max(0, cap - len(self.result.calls))

    def grammar(self) -> str | None:
        return self.format.grammar(self.tools, self.context, self.calls_left())

    def continuation(self) -> Continuation | None:
        return self.format.continuation(self.tools, self.context)

    def completions(self) -> Completions | None:
        return self.format.completions(self.tools, self.context)

    def submit(self, text: str) -> list[CallRecord]:
        """Parse and run a completion of `messages`; then either extend `messages` for the next
        step (results shown back) or set `done`."""
        if self.done:
            raise RuntimeError("this chunk is done: every step has been submitted")
        records = run_calls(
            self.step,
            self.format.parse(text),
            self.format.tool_names(self.tools),
            self.decoding.max_calls,
            self.context,
            self.execute,
            self.result,
            self.on_call,
            run=self.format.run,
            refuse_repeats=not self.format.runs_repeats,
        )
        self.result.steps = self.step
        self.result.outputs.append(text)
        more = self.step < self._max_steps and records and needs_results(records) and self.calls_left() > 0
        if more:
            self.messages = [
                *self.messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": self.format.results(records)},
            ]
            self.step += 1
        else:
            self.done = True
        return records


MAX_CALLS_UNBOUNDED = 10_000  # a grammar's bound when the format sets none (its tokens bound it anyway)


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
        texts: PromptTexts | None = None,
    ) -> None:
        self.info = ModelInfo.of(llm)
        self.generator = Generator(llm)
        self.tools = [t for t in tools if t.name in (*WRITE_TOOLS, "search_memory")]
        self.format_choice = resolve_format(self.info, wire_format)
        self.format_name = self.format_choice.name
        log.info("curator model %r: wire format %s (%s)", self.info.name, self.format_name, self.format_choice.reason)
        self.format: WireFormat = make_format(self.format_name, texts=texts)
        self.limits = limits or Limits()
        self.sampling = sampling or Sampling()

    def reserve(self) -> int:
        """Tokens of the context kept for the answer: every step's new tokens."""
        decoding = self.format.decoding(self.limits, self.sampling)
        return decoding.max_new_tokens * (self.limits.max_steps if self.format.multi_step else 1)

    def budget(self) -> Budget:
        """The most tokens a prompt may have (the context less the reserve), counted as llama.cpp does."""
        return Budget(self.generator.llm.n_ctx() - self.reserve(), self._prompt_tokens, self.generator)

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return self.generator.prompt_tokens(render_chat(self.info, messages))

    def session(
        self, chunk: str, timestamp: str | None, execute: Execute, on_call: Callable[[CallRecord], None] | None = None
    ) -> ChunkSession:
        return ChunkSession(
            self.format,
            self.tools,
            self.limits,
            chunk,
            timestamp,
            execute,
            sampling=self.sampling,
            on_call=on_call,
            budget=self.budget(),
        )

    def parts(self, chunk: str, timestamp: str | None) -> list[str]:
        """The chunk in parts that each fit the prompt with nothing of the memory shown: at most
        max_chunk_tokens tokens (the context was sized for that), fewer when the room is smaller."""
        budget = self.budget()
        room = budget.limit - budget.count(self.format.messages(self.tools, ChunkContext("", timestamp)))
        limit = min(self.limits.max_chunk_tokens, room - MIN_PART_TOKENS)
        if limit < MIN_PART_TOKENS:
            raise ChunkTooLong(room, self.generator.llm.n_ctx(), self.reserve())
        parts = split_chunk(chunk, limit, self.generator) if self.generator.count_tokens(chunk) > limit else [chunk]
        return [piece for part in parts for piece in self._fitting(part, timestamp, budget)]

    def _fitting(self, part: str, timestamp: str | None, budget: Budget) -> list[str]:
        """`part`, or its halves, and so on, until each fits with nothing of the memory shown (what
        a prompt adds to the text, such as defused control tokens, is counted too)."""
        empty = self.format.messages(self.tools, ChunkContext(part, timestamp))
        if budget.count(empty) <= budget.limit - MIN_PART_TOKENS:  # room left for the memory's totals and ids
            return [part]
        size = self.generator.count_tokens(part)
        if size <= MIN_PART_TOKENS:
            raise ChunkTooLong(budget.limit, self.generator.llm.n_ctx(), self.reserve())
        halves = split_chunk(part, (size + 1) // 2, self.generator)
        return [piece for half in halves for piece in self._fitting(half, timestamp, budget)]

    def curate(
        self,
        chunk: str,
        *,
        timestamp: str | None = None,
        execute: Execute,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> CurationResult:
        """Curate `chunk`, in parts when it is longer than a prompt has room for (each part a
        session of its own, reading the memory the earlier ones wrote)."""
        started = time.perf_counter()
        result = CurationResult(wire_format=self.format_name, wire_format_reason=self.format_choice.reason)
        for part in self.parts(chunk, timestamp):
            session = self.session(part, timestamp, execute, on_call)
            self._run(session)
            result.add(session.result)
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, session: ChunkSession) -> None:
        result = session.result
        while not session.done:
            decoding = session.decoding
            prompt = render_chat(self.info, session.messages)
            if session.step > 1 and not self._room_for(prompt, decoding.max_new_tokens):
                # the results shown back left no room for another answer: the chunk ends with this step
                log.info("curator: step %d would not fit the context; the chunk ends here", session.step)
                session.done = True
                break
            generated = self.generator.generate(
                prompt,
                max_tokens=decoding.max_new_tokens,
                grammar=session.grammar(),
                stop=self.format.stop(),
                sampling=decoding.sampling,
                continuation=session.continuation(),
                cut_degenerate=decoding.cut_degenerate,
            )
            result.prompt_tokens += generated.prompt_tokens
            result.prompts.append({"tokens": generated.prompt_tokens, "sha256": generated.prompt_sha256})
            result.completion_tokens += generated.completion_tokens
            result.degenerate |= generated.degenerate
            session.submit(generated.text)

    def _room_for(self, prompt: str, new_tokens: int) -> bool:
        return self.generator.prompt_tokens(prompt) + new_tokens <= self.generator.llm.n_ctx()


def run_calls(
    step: int,
    calls: list[ToolCall],
    allowed: Sequence[str],
    max_calls: int | None,
    context: ChunkContext,
    execute: Execute,
    result: CurationResult,
    on_call: Callable[[CallRecord], None] | None = None,
    *,
    run: Run | None = None,
    refuse_repeats: bool = True,
) -> list[CallRecord]:
    """Execute parsed calls in order (through the format's `run`), up to `max_calls` for the chunk
    (None: no cap). An unparsed call, an unknown tool, a call over the cap or (with
    `refuse_repeats`) a repeat of an earlier call of the chunk is recorded with its error, never
    executed (nothing is dropped unseen). Appends to `result.calls`."""
    run = run or _plain_run
    records = []
    seen = {_call_key(r.name, r.arguments) for r in result.calls}
    for call in calls:
        key = _call_key(call.name, call.arguments)
        if call.error is None and max_calls is not None and len(result.calls) >= max_calls:
            call = ToolCall(
                call.name, call.arguments, call.raw, f"over the limit of {max_calls} calls per chunk; not run"
            )
        elif call.error is None and call.name not in allowed:
            call = ToolCall(call.name, call.arguments, call.raw, f"unknown tool; the tools are {', '.join(allowed)}")
        elif call.error is None and refuse_repeats and key in seen:
            call = ToolCall(call.name, call.arguments, call.raw, "repeats an earlier call of this chunk; not run again")
        seen.add(key)
        if call.error is not None:
            record = CallRecord(step, call.name, call.arguments, False, error=call.error)
        else:
            arguments, outcome = run(call, context, execute)
            record = CallRecord(step, call.name, arguments, outcome.ok, outcome.output, outcome.error)
        result.calls.append(record)
        records.append(record)
        if on_call is not None:
            on_call(record)
    return records


Run = Callable[[ToolCall, ChunkContext, Execute], "tuple[dict[str, Any], CallOutcome]"]


def _plain_run(call: ToolCall, context: ChunkContext, execute: Execute) -> tuple[dict[str, Any], CallOutcome]:
    arguments = with_event_time(call, context.timestamp)
    return arguments, execute(call.name, arguments)


def _call_key(name: str, arguments: dict[str, Any]) -> str:
    return name + json.dumps(arguments, sort_keys=True, default=str)


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
    texts: PromptTexts | None = None,
) -> Curator:
    """Load `model` ('default' = the embedded SmolLM2-135M-Instruct with its trained adapter,
    'untrained' = without, or a GGUF model or adapter path); `texts` are
    the memalpha format's instruction texts (default: ours)."""
    limits = limits or Limits()
    # room for the instructions, the memory shown, the chunk and the answer: all steps' answers, or
    # the memalpha format's one answer of up to 2048 tokens
    answers = max(limits.max_steps * limits.max_new_tokens, TRAINED_NEW_TOKENS)
    n_ctx = min(32768, 2048 + 2 * limits.max_chunk_tokens + answers)
    files = resolve_policy(model)
    if files.adapter:
        log.info("curator model %s with the LoRA adapter %s", files.model.name, files.adapter)
    llm = load_llama(files, n_ctx=n_ctx, threads=threads)
    return Curator(llm, tools, wire_format=wire_format, limits=limits, sampling=sampling, texts=texts)
