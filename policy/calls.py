"""What the curator exchanges with whoever runs it: tool definitions in, tool calls out, outcomes back.

Plain data only, so the same curator runs inside the server, in a training rollout and in a test
(it is handed `ToolDef`s and an `Execute` callable; it imports nothing of `mcp_memalpha`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolDef:
    """One tool as the model is told about it: name, description, JSON schema of the arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """One call the model emitted, after parsing and repair. `error` is set when it could not be
    parsed into a name and an argument object; such a call is reported, never executed."""

    name: str
    arguments: dict[str, Any]
    raw: str = ""
    error: str | None = None


@dataclass(frozen=True)
class CallOutcome:
    """What executing one call gave: `ok` with a JSON-able `output`, or an `error` message."""

    ok: bool
    output: Any = None
    error: str | None = None


# execute(name, arguments) -> outcome. Must not raise for a refused call: refusals are outcomes.
Execute = Callable[[str, dict[str, Any]], CallOutcome]


@dataclass(frozen=True)
class CallRecord:
    """A call and its outcome, in the order made (what memorize_status reports)."""

    step: int
    name: str
    arguments: dict[str, Any]
    ok: bool
    output: Any = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CurationResult:
    """Everything one curation of one chunk did."""

    calls: list[CallRecord] = field(default_factory=list)
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    degenerate: bool = False  # some output was repetitive garbage and was cut off
    outputs: list[str] = field(default_factory=list)  # raw model text per step
    # per generation, the prompt llama.cpp evaluated: {"tokens": count, "sha256": ids_digest of the ids}
    prompts: list[dict[str, Any]] = field(default_factory=list)
    wire_format: str | None = None  # the format the model was prompted in, and why
    wire_format_reason: str | None = None
    parts: int = 0  # sessions the chunk was curated in (a chunk longer than a prompt's room is split)
    # per prompt whose memory shown was cut to fit the context: mcp_memalpha.policy.budget.Cut as a dict
    cuts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def executed(self) -> int:
        return sum(call.ok for call in self.calls)

    def add(self, part: CurationResult) -> None:
        """Count in the curation of one part of the chunk."""
        self.calls += part.calls
        self.steps += part.steps
        self.prompt_tokens += part.prompt_tokens
        self.completion_tokens += part.completion_tokens
        self.degenerate |= part.degenerate
        self.outputs += part.outputs
        self.prompts += part.prompts
        self.cuts += part.cuts
        self.parts += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": [call.to_json() for call in self.calls],
            "steps": self.steps,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "degenerate": self.degenerate,
            "prompts": self.prompts,
            "wire_format": self.wire_format,
            "wire_format_reason": self.wire_format_reason,
            "parts": self.parts,
            "cuts": self.cuts,
        }
