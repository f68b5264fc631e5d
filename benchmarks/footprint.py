"""What each part of a search costs in RSS, measured in one process stage by stage.

Builds a store of --items memories by single inserts (as a client writes them), then, in a fresh
child process, imports and loads each part a search needs in turn (the MCP SDK, our modules with
the ledger open, numpy, pyarrow, lancedb, the embedding model, the query-expansion table, the
tokenizer, the index opened and caught up, the full-text index prewarmed, the first search) and
reads RSS from /proc/self/status after each: the resident MB each part adds, split into anonymous
memory (heap, arrays) and file-backed pages (mapped libraries and files).

    python -m benchmarks.footprint --items 5000   (from the repository root: it imports benchmarks.startup)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def status_mb() -> tuple[float, float, float]:
    """(VmRSS, RssAnon, RssFile) of this process now, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["RssAnon"], fields["RssFile"]


def stages(data_dir: Path) -> list[tuple[str, Callable[[], Any]]]:
    """The parts in the order a server meets them, each as a step that loads it."""
    held: dict[str, Any] = {}

    def sdk() -> None:
        import mcp.server.mcpserver  # noqa: F401

    def ours() -> None:
        from mcp_memalpha import Memory, Settings, server  # noqa: F401

        held["memory"] = Memory(Settings(data_dir=data_dir)).open()

    def numpy() -> None:
        import numpy  # noqa: F401

    def pyarrow() -> None:
        import pyarrow  # noqa: F401

    def lancedb() -> None:
        from mcp_memalpha.store import lance

        lance.lancedb()

    def model() -> None:
        held["memory"].embedder.embed(["warm-up"])

    def synonyms() -> None:
        held["memory"].embedder.synonyms()

    def tokenizer() -> None:
        from mcp_memalpha.tokens import count_tokens

        count_tokens("warm-up")

    def index() -> None:
        held["memory"].sync_index()

    def prewarm() -> None:
        held["memory"].index.prewarm()

    def search() -> None:
        from mcp_memalpha import CallContext

        assert held["memory"].search(CallContext(), "friend at the cafe").hits

    return [
        ("MCP SDK (`mcp.server.mcpserver`)", sdk),
        ("our modules, ledger open", ours),
        ("numpy", numpy),
        ("pyarrow", pyarrow),
        ("lancedb", lancedb),
        ("embedding model (tokenizer, its table mapped)", model),
        ("query-expansion neighbours table", synonyms),
        ("tokenizer (token counts)", tokenizer),
        ("open the index, catch up", index),
        ("prewarm the full-text index", prewarm),
        ("first search (vector cache, LanceDB's query runtime)", search),
    ]


def measure(data_dir: Path) -> list[tuple[str, float, float, float]]:
    """Run in a fresh process: each stage's name and the RSS, anonymous and file MB after it."""
    rows = [("Python", *status_mb())]
    for name, step in stages(data_dir):
        step()
        rows.append((name, *status_mb()))
    return rows


def fill(data_dir: Path, items: int) -> None:
    """A store of `items` memories written one insert and one index sync at a time, as a
    client's calls build it (each sync commits a small fragment to the index)."""
    from mcp_memalpha import CallContext, Memory, Settings

    with Memory(Settings(data_dir=data_dir)) as memory:
        ctx = CallContext()
        for i in range(items):
            when = f"2024-01-{i % 28 + 1:02d}"
            memory.insert(ctx, "episodic", f"Event {i}: met a friend at the cafe number {i % 97}", when)
            if i % 10 == 9:  # a sync every 10 inserts, like a search between a few writes
                memory.sync_index()
            if i % 500 == 499:
                print(f"filled {i + 1}/{items}", end="\r", file=sys.stderr, flush=True)
        memory.sync_index()


def fill_one_by_one(data_dir: Path, items: int, sync_every: int) -> None:
    from mcp_memalpha import CallContext, Memory, Settings

    with Memory(Settings(data_dir=data_dir)) as memory:
        ctx = CallContext()
        for i in range(items):
            when = f"2024-01-{i % 28 + 1:02d}"
            memory.insert(ctx, "episodic", f"Event {i}: met a friend at the cafe number {i % 97}", when)
            if i % sync_every == sync_every - 1:
                memory.sync_index()
            if i % 500 == 499:
                print(f"filled {i + 1}/{items}", end="\r", file=sys.stderr, flush=True)


def search_latency(data_dir: Path, queries: int) -> dict[str, Any]:
    """p50 and p90 ms of hybrid searches after a warm-up, and the index's shape."""
    import statistics
    import time

    from mcp_memalpha import CallContext, Memory, Settings

    with Memory(Settings(data_dir=data_dir)) as memory:
        memory.warm_up()
        ctx, times = CallContext(), []
        for n in range(queries):
            started = time.perf_counter()
            memory.search(ctx, f"friend at the cafe number {n % 97}")
            times.append((time.perf_counter() - started) * 1000)
        table = memory.index._table_for_query()
        fts = next(i for i in table.list_indices() if i.index_type == "FTS")
        times.sort()
        return {
            "p50": statistics.median(times),
            "p90": times[round(0.9 * (len(times) - 1))],
            "fragments": table.stats()["fragment_stats"]["num_fragments"],
            "unindexed": fts.num_unindexed_rows,
        }


def latency_table(sizes: list[int], queries: int, sync_every: int) -> None:
    rows = []
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix="memalpha-latency-"))
        try:
            fill_one_by_one(work / "data", size, sync_every)
            rows.append((size, search_latency(work / "data", queries)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"Hybrid search on a store built by single inserts, an index sync every {sync_every}, "
        f"{queries} searches, Python {sys.version.split()[0]}\n"
    )
    print("| items | p50 ms | p90 ms | fragments | rows outside the full-text index |")
    print("|---|---|---|---|---|")
    for size, r in rows:
        print(f"| {size:,} | {r['p50']:.1f} | {r['p90']:.1f} | {r['fragments']} | {r['unindexed']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000, help="memories in the store")
    parser.add_argument("--data-dir", type=Path, help="measure this store instead of building one")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="wait after tools/list before the idle RSS")
    parser.add_argument("--latency", help="comma-separated store sizes: search latency instead of RSS")
    parser.add_argument("--queries", type=int, default=100, help="searches per size (with --latency)")
    parser.add_argument("--sync-every", type=int, default=10, help="inserts per index sync (with --latency)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.data_dir)))
        return
    if args.latency:
        latency_table([int(size) for size in args.latency.split(",")], args.queries, args.sync_every)
        return

    from benchmarks.startup import footprint  # not in the child: its first row is bare Python
    from mcp_memalpha.cli import launch_command

    work = Path(tempfile.mkdtemp(prefix="memalpha-footprint-"))
    try:
        data_dir = args.data_dir or work / "data"
        if args.data_dir is None:
            fill(data_dir, args.items)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMALPHA_")}
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.footprint", "--child", "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows = json.loads(out.strip().splitlines()[-1])
        served = footprint([*launch_command(), "serve", "--data-dir", str(data_dir)], env, args.idle_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"RSS by stage, {args.items if args.data_dir is None else 'given'} items, Python {sys.version.split()[0]}\n")
    print("| stage | + MB | total MB | anon MB | file MB |")
    print("|---|---|---|---|---|")
    before = None
    for name, rss, anon, file in rows:
        added = "" if before is None else f"{rss - before:.0f}"
        print(f"| {name} | {added} | {rss:.0f} | {anon:.0f} | {file:.0f} |")
        before = rss
    print(
        f"\nA spawned stdio server on that store: RSS idle {served[1]:.0f} MB, "
        f"after its first search {served[2]:.0f} MB"
    )


if __name__ == "__main__":
    main()
