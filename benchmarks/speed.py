"""Speed through the whole stack at 10k and 100k memories, measured through the MCP tools.

For each size: a JSON Lines file of real text (LoCoMo turns and sentences from the docstrings of
Python's standard library, each with an event time) is bulk-imported with `mcp-memalpha import`
(until searchable); then `mcp-memalpha serve --transport http` is spawned on it and measured over
streamable HTTP: cold start (spawn -> initialize done), the first search after it, search latency
per method, single-insert latency; and the server's peak RSS and the data directory's size.

    python benchmarks/speed.py --sizes 10000,100000 --out docs
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from mcp_memalpha.cli import launch_command

ROOT = Path(__file__).resolve().parents[1]
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
METHODS = ("hybrid", "bm25", "vector")


def real_sentences(limit: int) -> list[str]:
    """Prose sentences from the standard library's docstrings (real text, varied topics)."""
    sentences: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or len(sentences) >= limit:
            continue
        try:
            tree = ast.parse(path.read_text(errors="ignore"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module) and (doc := ast.get_docstring(node)):
                for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                    if 8 <= len(sentence.split()) <= 60 and sentence[0].isupper() and sentence.isprintable():
                        sentences.append(sentence)
    return list(dict.fromkeys(sentences))[:limit]


def corpus() -> tuple[list[str], list[str]]:
    conversations = json.loads(LOCOMO.read_text()) if LOCOMO.exists() else []
    turns, questions = [], []
    for conversation in conversations:
        for key, value in conversation["conversation"].items():
            if key.startswith("session_") and isinstance(value, list):
                turns += [f"{turn['speaker']}: {turn['text']}" for turn in value]
        questions += [qa["question"] for qa in conversation["qa"]]
    prose = real_sentences(60_000)
    return turns + prose, questions or prose[:500]


def write_import_file(path: Path, texts: list[str], size: int, rng: random.Random) -> None:
    from mcp_memalpha.ids import new_id

    with path.open("w") as out:
        out.write(json.dumps({"record": "header", "format": "mcp-memalpha", "format_version": 1, "exported_at": "now"}))
        out.write("\n")
        for i in range(size):
            day = f"20{rng.randint(15, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            when = f"{day}T{rng.randint(0, 23):02d}:00:00"
            kind = "episodic" if i % 3 else "semantic"
            item = {
                "record": "item",
                "id": new_id(kind, 8),
                "namespace": "default",
                "memory_type": kind,
                "content": texts[i % len(texts)],
                "event_time": when if kind == "episodic" else None,
                "created_at": "2025-01-01T00:00:00.000000Z",
                "updated_at": "2025-01-01T00:00:00.000000Z",
                "version": 1,
                "source": "import",
            }
            out.write(json.dumps(item) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure_server(data_dir: Path, questions: list[str], texts: list[str], queries: int) -> dict[str, Any]:
    from mcp import Client

    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            *launch_command(),
            "serve",
            "--transport",
            "http",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result: dict[str, Any] = {}
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                await anyio.sleep(0.01)
        async with Client(url, read_timeout_seconds=120) as client:
            result["cold_start_ms"] = (time.perf_counter() - started) * 1000
            first = time.perf_counter()
            await client.call_tool("search_memory", {"query": questions[0]})
            result["first_search_ms"] = (time.perf_counter() - first) * 1000
            # The floor under every figure below: one MCP round trip that does almost nothing
            # (it moves with the machine's speed, so compare other rows against it).
            floor = []
            for _ in range(queries):
                begin = time.perf_counter()
                await client.call_tool("core_memory_read", {})
                floor.append((time.perf_counter() - begin) * 1000)
            result["floor_p50"] = statistics.median(floor)
            for method in METHODS:
                latencies = []
                for question in questions[1 : queries + 1]:
                    begin = time.perf_counter()
                    reply = await client.call_tool("search_memory", {"query": question, "search_method": method})
                    latencies.append((time.perf_counter() - begin) * 1000)
                    assert not reply.is_error, reply.content
                result[f"{method}_p50"] = statistics.median(latencies)
                result[f"{method}_p95"] = percentile(latencies, 0.95)
            inserts = []
            for i in range(queries):
                begin = time.perf_counter()
                arguments = {"memory_type": "episodic", "content": texts[-1 - i], "timestamp": "2025-06-01T10:00"}
                reply = await client.call_tool("new_memory_insert", arguments)
                inserts.append((time.perf_counter() - begin) * 1000)
                assert not reply.is_error, reply.content
            result["insert_p50"] = statistics.median(inserts)
            result["insert_p95"] = percentile(inserts, 0.95)
            result["insert_per_s"] = 1000 * len(inserts) / sum(inserts)
            found = await client.call_tool("search_memory", {"query": texts[-1], "search_method": "bm25", "top_k": 3})
            assert any(hit["text"].endswith(texts[-1]) for hit in found.structured_content["results"])  # type: ignore[index]
        result["peak_rss_mb"] = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return result


def run_size(size: int, texts: list[str], questions: list[str], queries: int, work: Path) -> dict[str, Any]:
    rng = random.Random(size)
    data_dir, dump = work / f"data{size}", work / f"items{size}.jsonl"
    write_import_file(dump, texts, size, rng)
    started = time.perf_counter()
    subprocess.run(
        [*launch_command(), "import", str(dump), "--data-dir", str(data_dir)], check=True, capture_output=True
    )
    import_s = time.perf_counter() - started
    result = anyio.run(measure_server, data_dir, questions, texts, queries)
    result |= {
        "items": size,
        "import_per_s": size / import_s,
        "disk_mb": sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()) / 1e6,
    }
    return result


ROWS = [
    ("bulk import until searchable (items/s)", "import_per_s", "{:,.0f}"),
    ("single insert p50 / p95 (ms)", ("insert_p50", "insert_p95"), "{:.1f} / {:.1f}"),
    ("single inserts, sequential (items/s)", "insert_per_s", "{:,.0f}"),
    ("hybrid search p50 / p95 (ms)", ("hybrid_p50", "hybrid_p95"), "{:.1f} / {:.1f}"),
    ("bm25 search p50 / p95 (ms)", ("bm25_p50", "bm25_p95"), "{:.1f} / {:.1f}"),
    ("vector search p50 / p95 (ms)", ("vector_p50", "vector_p95"), "{:.1f} / {:.1f}"),
    ("MCP round trip floor: core_memory_read p50 (ms)", "floor_p50", "{:.1f}"),
    ("cold start: spawn -> initialize over HTTP (ms)", "cold_start_ms", "{:,.0f}"),
    ("first search after cold start (ms)", "first_search_ms", "{:,.0f}"),
    ("server peak RSS (MB)", "peak_rss_mb", "{:,.0f}"),
    ("data directory on disk (MB)", "disk_mb", "{:,.0f}"),
]


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| measure | " + " | ".join(f"{r['items']:,} items" for r in results) + " |"]
    lines.append("|---|" + "---|" * len(results))
    for label, keys, fmt in ROWS:
        cells = [fmt.format(*(r[k] for k in (keys if isinstance(keys, tuple) else (keys,)))) for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(results)
    for n, result in enumerate(results):
        xs = [i + n * width for i in range(len(METHODS))]
        p50 = [result[f"{m}_p50"] for m in METHODS]
        p95 = [result[f"{m}_p95"] - result[f"{m}_p50"] for m in METHODS]
        ax.bar(xs, p50, width, yerr=[[0] * len(METHODS), p95], capsize=4, label=f"{result['items']:,} items")
    ax.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(METHODS))], METHODS)
    ax.set_ylabel("ms per search (bar p50, whisker p95)")
    ax.set_title("Search latency through MCP, 2 cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200, help="searches per method and single inserts")
    parser.add_argument("--out", type=Path, help="folder to write speed.md and speed.png to")
    args = parser.parse_args()
    texts, questions = corpus()
    work = Path(tempfile.mkdtemp(prefix="memalpha-speed-"))
    results = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"measuring {size:,} items ...", file=sys.stderr, flush=True)
            results.append(run_size(size, texts, questions, args.queries, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = table(results)
    print(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "speed.md").write_text(report + "\n")
        plot(results, args.out / "speed.png")


if __name__ == "__main__":
    main()
