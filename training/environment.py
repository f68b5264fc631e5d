"""The RL environment: one rollout = one instance's chunks fed one by one to the policy, its tool
calls executed on a fresh memory, then the memory read back by the reader and scored.

Each chunk is one `policy.ChunkSession`, the step loop the server's curator runs too (it reads the
memory the format shows, builds the prompt, parses and runs the calls), and every call runs through
`mcp_memalpha.tools.execute` in a `Sandbox` with the server's own adapter, so a rollout sees
exactly what the curator sees in the server. Completions may come from anywhere:
- any callable `generate(messages) -> text` (a transformers model during GRPO, a test's script),
  driving `Episode.prompt()` / `Episode.submit(text)`;
- a llama.cpp `policy.Curator` (`Episode.run_curator`), which prompts and parses by itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp_memalpha.policy.calls import CallRecord, CurationResult
from mcp_memalpha.policy.curator import ChunkSession, Curator, Limits
from mcp_memalpha.policy.formats import Completions, make_format
from mcp_memalpha.policy.generation import Sampling
from mcp_memalpha.policy.memalpha import PromptTexts
from mcp_memalpha.training.data import Instance
from mcp_memalpha.training.reader import DEFAULT_BUDGET, ExtractiveReader, MemoryView, Reader, score_questions
from mcp_memalpha.training.rewards import (
    HeuristicTypeJudge,
    RewardWeights,
    TypeJudge,
    chunk_reward,
    compression_reward,
    executed_reward,
    qa_reward,
    type_fit_reward,
)
from mcp_memalpha.training.sandbox import Sandbox, tool_defs

from mcp_memalpha.tokens import count_tokens

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
    texts: PromptTexts | None = None  # the memalpha format's instruction texts (default: ours)

    def __post_init__(self) -> None:
        self.sandbox = Sandbox(core_capacity_tokens=self.core_capacity_tokens)
        self.format = make_format(self.wire_format, texts=self.texts)
        self.tools = tool_defs()
        self.steps: list[Step] = []
        self.results: list[CurationResult] = [CurationResult() for _ in self.instance.chunks]
        self.chunk = 0
        self._session: ChunkSession | None = None
        self.generation_seconds = 0.0

    # --- driving with any generator ---------------------------------------------------------
    @property
    def done(self) -> bool:
        """Every chunk memorized (chunks the format has nothing to do for are passed over)."""
        return self._current() is None

    def session(self) -> ChunkSession:
        """The current chunk's session (begun on first use; chunks with nothing to do are passed)."""
        session = self._current()
        if session is None:
            raise RuntimeError("the episode is over: every chunk has been memorized")
        return session

    def _current(self) -> ChunkSession | None:
        while self.chunk < len(self.instance.chunks):
            if self._session is None:
                text = self.instance.chunks[self.chunk]
                self._session = ChunkSession(
                    self.format, self.tools, self.limits, text, chunk_timestamp(text), self.sandbox.execute
                )
                self.results[self.chunk] = self._session.result
            if not self._session.done:
                return self._session
            self._next_chunk()
        return None

    def _next_chunk(self) -> None:
        self.chunk += 1
        self._session = None

    def prompt(self) -> Messages:
        """The messages to complete next (for the current chunk and step)."""
        return [dict(m) for m in self.session().messages]

    def grammar(self) -> str | None:
        """The format's grammar for the current step, for generators that can apply one."""
        return self.session().grammar()

    def completions(self) -> Completions | None:
        """What an extractive format allows the output of the current step to be (else None), for
        generators that constrain themselves as the server's grammar does."""
        return self.session().completions()

    @property
    def max_new_tokens(self) -> int:
        """The format's new tokens per step (2048 for memalpha, as trained; else the limits')."""
        return self.format.decoding(self.limits, Sampling()).max_new_tokens

    def submit(self, completion: str) -> list[CallRecord]:
        """Parse and execute a completion of `prompt()`; moves on to a further step of this chunk
        when the format shows results back and they matter, else to the next chunk."""
        session = self.session()
        messages, step = [dict(m) for m in session.messages], session.step
        records = session.submit(completion)
        self.steps.append(Step(self.chunk, step, messages, completion, records))
        if session.done:
            self._next_chunk()
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
