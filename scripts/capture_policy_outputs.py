"""Capture real llama.cpp outputs of the default model in every wire format, for the parser tests.

    python scripts/capture_policy_outputs.py  # writes tests/data/policy_outputs.json

Needs the `policy` extra. The outputs are what SmolLM2-135M really wrote, broken ones included:
the parser tests replay them, so they need no model.
"""

from __future__ import annotations

import json
from pathlib import Path

from mcp_memalpha.policy import Limits, Sampling, ToolDef, load_curator
from mcp_memalpha.policy.formats import make_format
from mcp_memalpha.policy.model import render_chat
from mcp_memalpha.policy.prompt import ChunkContext, Related

from mcp_memalpha.tools import TOOLS_BY_NAME

CHUNK = """Maya: I started a new job as a data engineer at a solar energy company on Monday.
Leo: Congrats! Are you still living in Porto?
Maya: Yes, and I adopted a cat named Pixel last weekend."""
RELATED = (Related("s-4k2m9q", "semantic", "Maya lives in Porto."),)
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "policy_outputs.json"


def main() -> None:
    tools = [ToolDef(t.name, t.description, t.input_schema()) for t in TOOLS_BY_NAME.values()]
    curator = load_curator("default", tools=tools, limits=Limits(max_new_tokens=300))
    context = ChunkContext.build(CHUNK, "2023-05-08", "Maya is a software developer.", RELATED)
    captured = []
    for name in ("memalpha", "tool_call", "json", "json-free"):
        fmt = make_format(name)
        for temperature in (0.0, 0.8):
            generated = curator.generator.generate(
                render_chat(curator.info, fmt.messages(curator.tools, context)),
                max_tokens=300,
                grammar=fmt.grammar(curator.tools, context, 12),
                stop=fmt.stop(),
                sampling=Sampling(temperature=temperature, seed=7),
            )
            captured.append({"format": name, "temperature": temperature, "text": generated.text})
            print(f"--- {name} t={temperature} ({generated.stop_reason})\n{generated.text[:400]}")
    OUT.write_text(json.dumps({"model": curator.info.name, "chunk": CHUNK, "outputs": captured}, indent=1) + "\n")


if __name__ == "__main__":
    main()
