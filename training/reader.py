"""The QA side: what a reader sees for a question (a `View`), and how it answers (a `Reader`).

Views (all under one token budget, so methods are compared on what fits in the same window):
- `MemoryView`: the built memory as the paper's reader reads it: the core paragraph, then the
  `search_memory` hits for the question (BM25 by default, as in the paper; `hybrid` is ours),
  through the same tool a client calls, trimmed to the budget by the tool's own `max_tokens`.
- `LongContextView`: the last tokens of the raw input (the long-context baseline).
- `RagView`: BM25 over the raw input cut into passages (the RAG-top-k baseline), stored verbatim
  in a scratch memory and searched with `search_memory`, so it uses the very same BM25.

Readers:
- `ExtractiveReader` (default): LLM-free and deterministic. Its prediction is the view itself,
  scored with the recall form of the source's metric (mcp_memalpha.training.metrics, `extractive=True`): "is
  the answer in what the reader was shown". Cheap enough to run inside every RL rollout.
- `LlamaReader`: a GGUF model through llama.cpp writes a short answer from the view, scored with
  the source's own metric (slower; for evaluation).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mcp_memalpha.training.data import QA, Instance
from mcp_memalpha.training.metrics import metric_for

from mcp_memalpha.tokens import count_tokens

if TYPE_CHECKING:
    from mcp_memalpha.training.sandbox import Sandbox as ToolRunner

DEFAULT_BUDGET = 300  # tokens the reader is shown per question (WordPiece, mcp_memalpha.tokens)


class View(Protocol):
    def context(self, question: str) -> str: ...


class Reader(Protocol):
    extractive: bool  # True: the prediction is the context itself

    def answer(self, question: str, context: str) -> str: ...


def trim_to_tokens(text: str, budget: int, *, keep: str = "head") -> str:
    """`text` cut on word boundaries to at most `budget` tokens, keeping its head or its tail."""
    if count_tokens(text) <= budget:
        return text
    words = text.split(" ")
    low, high = 0, len(words)  # binary search on the number of words kept
    while low < high:
        middle = (low + high + 1) // 2
        part = " ".join(words[:middle] if keep == "head" else words[-middle:])
        if count_tokens(part) <= budget:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low] if keep == "head" else words[len(words) - low :]) if low else ""


@dataclass
class MemoryView:
    """Core + search hits of a memory, through the tools. `runner` executes tool calls."""

    runner: ToolRunner
    budget: int = DEFAULT_BUDGET
    top_k: int = 20
    search_method: str = "bm25"

    def context(self, question: str) -> str:
        core = self.runner.call("core_memory_read", {}).get("content", "")
        core = trim_to_tokens(core, self.budget) if core else ""
        left = self.budget - count_tokens(core)
        hits: list[str] = []
        if left > 0:
            found = self.runner.call(
                "search_memory",
                {
                    "query": question,
                    "top_k": self.top_k,
                    "search_method": self.search_method,
                    "max_tokens": left,
                    "excerpt_tokens": 0,  # whole memories, as the policies were trained and measured with
                },
            )
            hits = [hit["text"] for hit in found["results"]]
        return "\n".join(part for part in (core, *hits) if part)


@dataclass
class LongContextView:
    """The last `budget` tokens of the raw input, whatever the question."""

    chunks: Sequence[str]
    budget: int = DEFAULT_BUDGET

    def context(self, question: str) -> str:
        return self._tail

    @functools.cached_property
    def _tail(self) -> str:
        return trim_to_tokens("\n".join(self.chunks), self.budget, keep="tail")


def passages(chunks: Sequence[str], max_tokens: int = 100) -> list[str]:
    """The raw input as passages of whole lines of at most ~`max_tokens` tokens, each starting
    with its chunk's header line when the chunk has one (so a passage keeps its date)."""
    found = []
    for chunk in chunks:
        lines = [line for line in chunk.splitlines() if line.strip()]
        header = lines[0] if lines and lines[0].startswith("[") and lines[0].endswith("]") else ""
        body = lines[1:] if header else lines
        current: list[str] = []
        for line in body:
            candidate = "\n".join([header, *current, line] if header else [*current, line])
            if current and count_tokens(candidate) > max_tokens:
                found.append("\n".join([header, *current] if header else current))
                current = []
            current.append(line)
        if current:
            found.append("\n".join([header, *current] if header else current))
    return found


@dataclass
class RagView:
    """BM25 top-k over raw passages, stored in a scratch memory by the caller (`runner`)."""

    runner: ToolRunner
    budget: int = DEFAULT_BUDGET
    top_k: int = 20

    def context(self, question: str) -> str:
        found = self.runner.call(
            "search_memory",
            # Whole passages (stored without dates, so text is the passage), as RAG baselines read them.
            {
                "query": question,
                "top_k": self.top_k,
                "search_method": "bm25",
                "max_tokens": self.budget,
                "excerpt_tokens": 0,
            },
        )
        return "\n".join(hit["text"] for hit in found["results"])


class ExtractiveReader:
    """The LLM-free reader: it "answers" with what it was shown."""

    extractive = True

    def answer(self, question: str, context: str) -> str:
        return context


ANSWER_PROMPT = (
    "Answer the question from the memory below in a few words (a name, a date, a short phrase). "
    "If the memory does not say, answer 'not mentioned'.\n\n# Memory\n{context}\n\n# Question\n{question}"
)


class LlamaReader:
    """A GGUF model (llama.cpp) that writes a short answer from the context; greedy decoding."""

    extractive = False

    def __init__(self, model: str = "default", *, max_tokens: int = 32, threads: int | None = None) -> None:
        from mcp_memalpha.policy.model import ModelInfo, load_llama, resolve_model

        self.llm = load_llama(resolve_model(model), n_ctx=4096, threads=threads)
        self.info = ModelInfo.of(self.llm)
        self.max_tokens = max_tokens

    def answer(self, question: str, context: str) -> str:
        from mcp_memalpha.policy.model import render_chat

        prompt = render_chat(
            self.info, [{"role": "user", "content": ANSWER_PROMPT.format(context=context, question=question)}]
        )
        out: Any = self.llm.create_completion(prompt, max_tokens=self.max_tokens, temperature=0.0)
        return str(out["choices"][0]["text"]).strip().splitlines()[0] if out["choices"][0]["text"].strip() else ""


def score_questions(view: View, reader: Reader, instance: Instance) -> list[float]:
    """Each question answered from `view` by `reader`, scored by the data source's metric."""
    metric = metric_for(instance.data_source, extractive=reader.extractive)
    return [metric.score(reader.answer(qa.question, view.context(qa.question)), qa) for qa in instance.questions]


def score_one(view: View, reader: Reader, data_source: str, qa: QA) -> float:
    metric = metric_for(data_source, extractive=reader.extractive)
    return metric.score(reader.answer(qa.question, view.context(qa.question)), qa)
