"""Running out of file descriptors is a passing state, not damage (issue 16 #1): the call that
hits it fails with an error that says so, the index is neither wiped nor rebuilt, and the next
call, with descriptors free again, finds everything. A real limit (RLIMIT_NOFILE) in a child
process, filled with real descriptors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, os, resource, sys
from pathlib import Path
from mcp_memalpha import CallContext, Memory, Settings

def found(memory, ctx):
    return sorted(hit.item.id for hit in memory.search(ctx, "quokka", method="bm25", top_k=50).hits)

def exhaust(spare):
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    for _ in range(spare):  # leave a few free: enough for some steps of a search, not for all
        os.close(held.pop())
    return held

def attempt(call):
    try:
        call()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

with Memory(Settings(data_dir=Path(sys.argv[1]))) as memory:
    ctx = CallContext()
    for i in range(12):
        memory.insert(ctx, "semantic", f"note {i}: the quokka ate lettuce")
    before = found(memory, ctx)
    generation = memory.index.generation()
    open_now = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    rounds = []
    for spare in (0, 1, 2):
        held = exhaust(spare)
        errors = {
            "state": attempt(memory.index._read_state),
            "insert": attempt(lambda: memory.insert(ctx, "semantic", f"a quokka note written with {spare} spare")),
            "search": attempt(lambda: found(memory, ctx)),
        }
        for descriptor in held:
            os.close(descriptor)
        rounds.append({"spare": spare, "errors": errors, "after": found(memory, ctx),
                       "generation": memory.index.generation()})
    print(json.dumps({"before": before, "generation": generation, "rounds": rounds, "ids": len(memory.index.ids())}))
"""


def test_out_of_files_neither_wipes_nor_rebuilds_the_index(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(result["before"]) == 12
    assert result["rounds"][0]["errors"]["search"], "the search found descriptors: the test does not test"
    for round_ in result["rounds"]:
        assert set(result["before"]) <= set(round_["after"])  # every hit is back
        assert round_["generation"] == result["generation"]  # the same build: not wiped, not rebuilt
        for step in ("state", "search"):  # an error for that call, saying why; never "damaged"
            error = round_["errors"][step]
            assert error is None or ("StorageError" in error and "run out of open files" in error), round_
    assert result["ids"] >= 12
