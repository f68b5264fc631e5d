"""The RL environment: one rollout = one instance's chunks fed one by one to the policy, its tool
calls executed on a fresh memory, then the memory read back by the reader and scored.

The prompt and the parsing are the policy package's own (`policy.formats`, `policy.read_context`,
`policy.run_calls`), and every call runs through `mcp_memalpha.tools.execute` in a `Sandbox`, so a
rollout sees exactly what the curator sees in the server. Completions may come from anywhere:
- any callable `generate(messages) -> text` (a transformers model during GRPO, a test's script),
  driving `Episode.prompt()` / `Episode.submit(text)`, with tool results shown back for another
  step when the wire format supports it (like `Curator.curate`);
- a llama.cpp `policy.Curator` (`Episode.run_curator`), which prompts and parses by itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp_memalpha.tokens import count_tokens
from policy.calls import CallRecord, CurationResult
from policy.curator import Curator, Limits, needs_results, read_context, run_calls
from policy.formats import Completions, make_format
from policy.prompt import ChunkContext
from training.data import Instance
from training.reader import DEFAULT_BUDGET, ExtractiveReader, MemoryView, Reader, score_questions
from training.rewards import (
    HeuristicTypeJudge,
    RewardWeights,
    TypeJudge,
    chunk_reward,
    compression_reward,
    executed_reward,
    qa_reward,
    type_fit_reward,
)
from training.sandbox import Sandbox, tool_defs

Messages = list[dict[str, str]]
Generate = Callable[[Messages], str]

_HEADER = re.compile(r"^\[(?:Dialogue|Conversation)[^\]]*?(?:\bon|\bat(?: timestamp)?)\s+(?P<when>[^\]]+)\]", re.I)


def chunk_timestamp(chunk: str) -> str | None:
    """The date of a chunk from its header: `[Dialogue at 1:56 pm on 8 May, 2023]`,
    `[Dialogue between User and Assistant on 2024-01-03 00:00]`, `[Dialogue at timestamp
    2023/05/25 (Thu) 17:08]` (the weekday is dropped: the time parser wants the date)."""
    first = chunk.lstrip().split("\n", 1)[0]
    match = _HEADER.match(first)
    if not match:
        return None
    when = re.sub(r"\s*\((mon|tue|wed|thu|fri|sat|sun)[a-z]*\)\s*", " ", match.group("when"), flags=re.I)
    return " ".join(when.split()) or None


@dataclass
class Step:
    """One generation for one chunk: the prompt it answered, its text and the calls it made."""

    chunk: int
    step: int
    messages: Messages
    completion: str
    records: list[CallRecord]


@dataclass
class RolloutScore:
    qa_scores: list[float]
    qa: float  # r1
    compression: float  # r3
    executed: list[float]  # r2_t per chunk
    type_fit: list[float]  # r4_t per chunk
    rewards: list[float]  # r per chunk
    memory_tokens: int
    input_tokens: int


@dataclass
class Episode:
    """One rollout over one instance on its own fresh memory. Close it (or use `with`)."""

    instance: Instance
    wire_format: str = "memalpha"
    limits: Limits = field(default_factory=lambda: Limits(max_steps=1))
    core_capacity_tokens: int = 512

    def __post_init__(self) -> None:
        self.sandbox = Sandbox(core_capacity_tokens=self.core_capacity_tokens)
        self.format = make_format(self.wire_format)
        self.tools = [t for t in tool_defs() if t.name in _POLICY_TOOLS]
        self.steps: list[Step] = []
        self.results: list[CurationResult] = [CurationResult() for _ in self.instance.chunks]
        self.chunk = 0
        self._step = 0
        self._context: ChunkContext | None = None
        self._messages: Messages = []
        self.generation_seconds = 0.0

    # --- driving with any generator ---------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.chunk >= len(self.instance.chunks)

    def prompt(self) -> Messages:
        """The messages to complete next (for the current chunk and step)."""
        if self.done:
            raise RuntimeError("the episode is over: every chunk has been memorized")
        if self._context is None:
            text = self.instance.chunks[self.chunk]
            self._context = read_context(text, chunk_timestamp(text), self.sandbox.execute)
            self._messages = self.format.messages(self.tools, self._context)
            self._step = 1
        return [dict(m) for m in self._messages]

    def grammar(self) -> str | None:
        """The format's grammar for the current step, for generators that can apply one."""
        self.prompt()
        assert self._context is not None
        left = self.limits.max_calls - len(self.results[self.chunk].calls)
        return self.format.grammar(self.tools, self._context, left)

    def completions(self) -> Completions | None:
        """What an extractive format allows the output of the current step to be (else None), for
        generators that constrain themselves as the server's grammar does."""
        self.prompt()
        assert self._context is not None
        return self.format.completions(self.tools, self._context)

    def submit(self, completion: str) -> list[CallRecord]:
        """Parse and execute a completion of `prompt()`; moves on to a further step of this chunk
        when the format shows results back and they matter, else to the next chunk."""
        messages = self.prompt()
        assert self._context is not None
        result = self.results[self.chunk]
        allowed = tuple(t.name for t in self.tools)
        records = run_calls(
            self._step,
            self.format.parse(completion),
            allowed,
            self.limits.max_calls,
            self._context,
            self.sandbox.execute,
            result,
        )
        result.steps = self._step
        result.outputs.append(completion)
        self.steps.append(Step(self.chunk, self._step, messages, completion, records))
        more = (
            self.format.multi_step
            and self._step < self.limits.max_steps
            and records
            and needs_results(records)
            and len(result.calls) < self.limits.max_calls
        )
        if more:
            self._messages += [
                {"role": "assistant", "content": completion},
                {"role": "user", "content": self.format.results(records)},
            ]
            self._step += 1
        else:
            self.chunk += 1
            self._context = None
        return records

    def run(self, generate: Generate) -> Episode:
        """Memorize every chunk with completions from `generate(messages)`."""
        while not self.done:
            messages = self.prompt()
            started = time.perf_counter()
            text = generate(messages)
            self.generation_seconds += time.perf_counter() - started
            self.submit(text)
        return self

    # --- driving with a llama.cpp curator -----------------------------------------------------
    def run_curator(self, curator: Curator) -> Episode:
        """Memorize every chunk with `curator.curate` (it prompts, parses and executes itself)."""
        for index, text in enumerate(self.instance.chunks):
            started = time.perf_counter()
            self.results[index] = curator.curate(text, timestamp=chunk_timestamp(text), execute=self.sandbox.execute)
            self.generation_seconds += time.perf_counter() - started
        self.chunk = len(self.instance.chunks)
        return self

    # --- scoring ---------------------------------------------------------------------------
    def chunk_records(self, index: int) -> list[CallRecord]:
        return list(self.results[index].calls)

    def score(
        self,
        reader: Reader | None = None,
        *,
        budget: int = DEFAULT_BUDGET,
        top_k: int = 20,
        search_method: str = "bm25",
        weights: RewardWeights | None = None,
        judge: TypeJudge | None = None,
    ) -> RolloutScore:
        """Answer the instance's questions from the built memory and compute every reward term."""
        reader = reader or ExtractiveReader()
        weights = weights or RewardWeights()
        judge = judge or HeuristicTypeJudge()
        view = MemoryView(self.sandbox, budget=budget, top_k=top_k, search_method=search_method)
        scores = score_questions(view, reader, self.instance)
        memory_tokens = self.sandbox.memory_tokens()
        input_tokens = sum(count_tokens(chunk) for chunk in self.instance.chunks)
        r1, r3 = qa_reward(scores), compression_reward(memory_tokens, input_tokens)
        r2 = [executed_reward(self.chunk_records(i)) for i in range(len(self.instance.chunks))]
        r4 = [type_fit_reward(self.chunk_records(i), judge) for i in range(len(self.instance.chunks))]
        rewards = [chunk_reward(r1, a, r3, b, weights) for a, b in zip(r2, r4, strict=True)]
        return RolloutScore(scores, r1, r3, r2, r4, rewards, memory_tokens, input_tokens)

    @property
    def calls(self) -> int:
        return sum(len(result.calls) for result in self.results)

    def close(self) -> None:
        self.sandbox.close()

    def __enter__(self) -> Episode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_POLICY_TOOLS = ("new_memory_insert", "memory_update", "memory_delete", "search_memory")
