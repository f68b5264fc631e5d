"""Cold start of the stdio server: spawn -> `initialize` reply, and the first search after it.

Spawns `mcp-memalpha serve` over a real pipe, as Claude Desktop does, sends `initialize` and
times the reply, then `tools/list` (what a client sends next: the window can use the server once
it has the list). For scale, a one-tool server on the bare MCP SDK is timed in the same run (the
floor set by importing the SDK), and with --also, the server of another source tree (a checkout
of older code, started as `python -m mcp_memalpha` with that tree first on PYTHONPATH). Then, on
a store of --items memories, times the first `search_memory` after the handshake (LanceDB import,
embedding model load, index open).
Last, the footprint a client window pays: the bytes of the `tools/list` result (all of it goes
into the model's context) and the server's RSS when idle (initialized, tools listed, no call yet,
--idle-seconds later) and after its first search.

    python benchmarks/startup.py --runs 15 --items 5000 [--also /tmp/old-checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp_memalpha.cli import launch_command

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}
BARE_SERVER = """
from mcp.server.mcpserver import MCPServer
server = MCPServer("bare")
@server.tool()
def ping() -> str:
    return "pong"
server.run("stdio")
"""


FLOOR = "bare MCP SDK server (floor)"


def send(process: subprocess.Popen[bytes], message: dict) -> None:
    assert process.stdin is not None
    process.stdin.write((json.dumps(message) + "\n").encode())
    process.stdin.flush()


def receive(process: subprocess.Popen[bytes], want_id: int, timeout: float = 180.0) -> dict:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=deadline - time.monotonic()):
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("server closed stdout")
            message = json.loads(line)
            if message.get("id") == want_id:
                return message
    raise TimeoutError(f"no reply to request {want_id} within {timeout} s")


def spawn(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float]:
    """Start the server and return it with the seconds until its initialize reply."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    send(process, INITIALIZE)
    receive(process, 1)
    elapsed = time.perf_counter() - started
    send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return process, elapsed


def handshake(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawn to the initialize reply, and to the tools/list reply after it."""
    started = time.perf_counter()
    process, initialized = spawn(command, env)
    try:
        list_tools(process)
        return initialized, time.perf_counter() - started
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_mb(pid: int) -> float:
    """Resident set size of a process now (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def list_tools(process: subprocess.Popen[bytes]) -> int:
    """The bytes of the server's tools/list result, as sent (compact JSON, UTF-8)."""
    send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    listed = receive(process, 2)["result"]
    return len(json.dumps(listed, separators=(",", ":"), ensure_ascii=False).encode())


def listed_bytes(command: list[str], env: dict[str, str]) -> int:
    process, _ = spawn(command, env)
    try:
        return list_tools(process)
    finally:
        stop(process)


def footprint(command: list[str], env: dict[str, str], idle_seconds: float) -> tuple[int, float, float]:
    """(tools/list result bytes, idle RSS MB, RSS MB after the first search) of one server."""
    process, _ = spawn(command, env)
    try:
        size = list_tools(process)
        time.sleep(idle_seconds)
        idle = rss_mb(process.pid)
        call = {"name": "search_memory", "arguments": {"query": "friend at the cafe"}}
        send(process, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call})
        receive(process, 3)
        return size, idle, rss_mb(process.pid)
    finally:
        stop(process)


def fill(data_dir: Path, items: int) -> None:
    from mcp_memalpha import CallContext, Memory, Settings

    with Memory(Settings(data_dir=data_dir)) as memory:
        ctx = CallContext()
        for i in range(items):
            memory.insert(
                ctx, "episodic", f"Event {i}: met a friend at the cafe number {i % 97}", f"2024-01-{i % 28 + 1:02d}"
            )
        memory.sync_index()


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return f"| {name} | {len(ms)} | {statistics.median(ms):.0f} | {p90:.0f} | {ms[0]:.0f} | {ms[-1]:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--items", type=int, default=1000, help="memories in the store for the first-search figure")
    parser.add_argument("--also", type=Path, default=None, help="a source tree whose server is timed beside this one")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="wait after tools/list before the idle RSS")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMALPHA_")}
    work = Path(tempfile.mkdtemp(prefix="memalpha-bench-"))
    try:
        fill(work / "filled", args.items)
        # name -> (command, its environment, whether it takes a data directory)
        servers = {FLOOR: ([sys.executable, "-c", BARE_SERVER], env, False)}
        if args.also is not None:
            old_tree = {**env, "PYTHONPATH": str(args.also)}
            servers[f"the code at {args.also}"] = ([sys.executable, "-m", "mcp_memalpha", "serve"], old_tree, True)
        servers["mcp-memalpha serve"] = ([*launch_command(), "serve"], env, True)
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        first_search = []
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", end="\r", file=sys.stderr, flush=True)
            for index, (name, (command, server_env, takes_data)) in enumerate(servers.items()):
                data = ["--data-dir", str(work / f"empty-{index}-{run}")] if takes_data else []
                timings[name].append(handshake([*command, *data], server_env))
            process, _ = spawn([*launch_command(), "serve", "--data-dir", str(work / "filled")], env)
            started = time.perf_counter()
            call = {"name": "search_memory", "arguments": {"query": "friend at the cafe"}}
            send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
            reply = receive(process, 2)
            first_search.append(time.perf_counter() - started)
            assert reply["result"]["structuredContent"]["results"], reply
            stop(process)
        filled = [*launch_command(), "serve", "--data-dir", str(work / "filled")]
        sizes = footprint(filled, env, args.idle_seconds)
        with_policy = listed_bytes([*filled, "--policy", "default"], env) if _has_policy() else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"Cold start over stdio, {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("| measure | runs | median ms | p90 ms | min ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, times in timings.items():
        print(summary(f"spawn -> initialize reply, {name}", [t[0] for t in times]))
        print(summary(f"spawn -> tools/list reply, {name}", [t[1] for t in times]))
    print(summary(f"first search_memory after initialize ({args.items} items)", first_search))
    floor = timings[FLOOR]
    for name, times in timings.items():
        if name != FLOOR:
            ratios = [statistics.median(t[k] for t in times) / statistics.median(t[k] for t in floor) for k in (0, 1)]
            print(f"\n{name} / bare SDK, medians: spawn -> initialize {ratios[0]:.2f}x, -> tools/list {ratios[1]:.2f}x")
    print(f"tools/list result: {sizes[0]:,} bytes" + (f" ({with_policy:,} with --policy)" if with_policy else ""))
    print(f"RSS idle ({args.idle_seconds:g} s after tools/list): {sizes[1]:.0f} MB")
    print(f"RSS after the first search ({args.items} items): {sizes[2]:.0f} MB")


def _has_policy() -> bool:
    """Whether the curator extra is installed (the memorize tools are listed only with a policy)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


if __name__ == "__main__":
    main()
