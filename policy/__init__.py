"""The curator policy: a llama.cpp GGUF model that writes memory through the tools it is handed.

It depends on nothing of `mcp_memalpha`: it is given `ToolDef`s and an `execute(name, arguments)`
callable, so the same code runs inside the server, in a training rollout and in a test.
`llama_cpp` is imported lazily (install the `policy` extra).
"""

from policy.calls import CallOutcome, CallRecord, CurationResult, Execute, ToolCall, ToolDef
from policy.curator import ChunkTooLong, Curator, Limits, load_curator, needs_results, read_context, run_calls
from policy.formats import FORMATS, choose_format, make_format
from policy.generation import Generated, Generator, Sampling, is_degenerate
from policy.model import ModelNotFound, default_model_path, resolve_model

__all__ = [
    "FORMATS",
    "CallOutcome",
    "CallRecord",
    "ChunkTooLong",
    "CurationResult",
    "Curator",
    "Execute",
    "Generated",
    "Generator",
    "Limits",
    "ModelNotFound",
    "Sampling",
    "ToolCall",
    "ToolDef",
    "choose_format",
    "default_model_path",
    "is_degenerate",
    "load_curator",
    "make_format",
    "needs_results",
    "read_context",
    "resolve_model",
    "run_calls",
]
