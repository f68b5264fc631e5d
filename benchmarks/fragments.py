"""Search latency on a memory built by single inserts, as fragments pile up between compactions.

Each insert is followed by an index sync (what the server's background indexer does ~50 ms after
a write), so every insert leaves one small LanceDB fragment until the next `optimize`. A search
after each of the last `--window` inserts samples every point of the compaction cycle. Run once
per compaction interval to compare (`--every`, default: the index's OPTIMIZE_EVERY).

    python benchmarks/fragments.py --items 1000 --every 50
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.store import index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--window", type=int, default=100, help="inserts at the end followed by a search")
    parser.add_argument("--every", type=int, default=index.OPTIMIZE_EVERY, help="index commits between optimizes")
    args = parser.parse_args()
    index.OPTIMIZE_EVERY = args.every
    rng = random.Random(7)
    words = Path(__file__).read_text().split() + [f"topic{i}" for i in range(300)]
    ctx = CallContext()
    latencies, sync_ms = [], []
    with tempfile.TemporaryDirectory() as tmp, Memory(Settings(data_dir=Path(tmp) / "data")) as memory:
        for i in range(args.items):
            memory.insert(ctx, "semantic", " ".join(rng.choice(words) for _ in range(14)) + f" note {i}")
            began = time.perf_counter()
            memory.sync_index()
            sync_ms.append((time.perf_counter() - began) * 1000)
            if i >= args.items - args.window:
                began = time.perf_counter()
                memory.search(ctx, " ".join(rng.choice(words) for _ in range(3)), method="bm25")
                latencies.append((time.perf_counter() - began) * 1000)
    ordered = sorted(latencies)
    print(
        f"items {args.items}, optimize every {args.every} commits: "
        f"bm25 search p50 {statistics.median(ordered):.1f} ms, "
        f"p95 {ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms; sync after an insert p50 "
        f"{statistics.median(sync_ms):.1f} ms, max {max(sync_ms):.0f} ms"
    )


if __name__ == "__main__":
    main()
