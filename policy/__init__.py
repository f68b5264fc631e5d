"""The curator policy: a llama.cpp GGUF model that writes memory through the tools it is handed.

It depends on nothing of `mcp_memalpha`: it is given `ToolDef`s and an `execute(name, arguments)`
callable, so the same code runs inside the server, in a training rollout and in a test.
`llama_cpp` is imported lazily (install the `policy` extra).
"""

from mcp_memalpha.policy.calls import CallOutcome, CallRecord, CurationResult, Execute, ToolCall, ToolDef
from mcp_memalpha.policy.curator import (
    ChunkSession,
    ChunkTooLong,
    Curator,
    Limits,
    load_curator,
    needs_results,
    run_calls,
)
from mcp_memalpha.policy.formats import FORMATS, make_format
from mcp_memalpha.policy.generation import Generated, Generator, Sampling, is_degenerate
from mcp_memalpha.policy.memalpha import DEFAULT_TEXTS, PromptTexts, load_prompt_texts
from mcp_memalpha.policy.model import ModelNotFound, default_model_path, resolve_model
from mcp_memalpha.policy.prompt import read_context

__all__ = [
    "DEFAULT_TEXTS",
    "FORMATS",
    "CallOutcome",
    "CallRecord",
    "ChunkSession",
    "ChunkTooLong",
    "CurationResult",
    "Curator",
    "Execute",
    "Generated",
    "Generator",
    "Limits",
    "ModelNotFound",
    "PromptTexts",
    "Sampling",
    "ToolCall",
    "ToolDef",
    "default_model_path",
    "is_degenerate",
    "load_curator",
    "load_prompt_texts",
    "make_format",
    "needs_results",
    "read_context",
    "resolve_model",
    "run_calls",
]
