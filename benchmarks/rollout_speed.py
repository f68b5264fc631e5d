"""Tool execution speed inside training rollouts: calls per second through `tools.execute`.

Runs rollouts of the LoCoMo training set with a scripted policy (every statement of a chunk as an
episodic insert, in the Memalpha wire format) so that the figure is the environment's own cost,
not a model's. Prints calls/s inside tool execution, and rollout wall time split into tools and
the rest (prompt building, parsing, scoring). Usage: python benchmarks/rollout_speed.py [N]
"""

from __future__ import annotations

import json
import sys
import time

from mcp_memalpha.policy.prompt import statements
from mcp_memalpha.training.data import training_set
from mcp_memalpha.training.environment import Episode


def copy_everything(messages: list[dict[str, str]]) -> str:
    chunk = messages[-1]["content"].split("<new_chunk>\n", 1)[1].split("\n</new_chunk>", 1)[0]
    calls = [{"memory_type": "episodic_memory", "content": s} for s in statements(chunk)[:12]]
    return "\n".join(f"✿FUNCTION✿: new_memory_insert\n✿ARGS✿: {json.dumps(c)}" for c in calls)


def main(rollouts: int) -> None:
    instances = training_set()
    with Episode(instances[0]) as warm:  # the first search imports LanceDB (~1-2 s): not a rollout cost
        warm.run(copy_everything)
    calls = seconds = wall = 0.0
    for instance in instances[:rollouts]:
        started = time.perf_counter()
        with Episode(instance) as episode:
            episode.run(copy_everything)
            episode.score()
            calls += episode.sandbox.calls
            seconds += episode.sandbox.seconds
        wall += time.perf_counter() - started
    print(f"{rollouts} rollouts, {int(calls)} tool calls (writes, context searches, reader searches)")
    print(f"tool execution: {calls / seconds:.0f} calls/s ({1000 * seconds / calls:.1f} ms per call)")
    print(f"rollout wall time: {wall / rollouts:.2f} s each, of which tools {seconds / rollouts:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
