"""Speed through the whole stack at 10k and 100k memories, measured through the MCP tools.

For each size: a JSON Lines file of real text (LoCoMo turns and sentences from the docstrings of
Python's standard library, each with an event time) is bulk-imported with `mcp-memalpha import`
(until searchable); then `mcp-memalpha serve --transport http` is spawned on it and measured over
streamable HTTP: cold start (spawn -> initialize done), the first search after it, search latency
per method, single-insert latency; and the server's peak RSS and the data directory's size.

With `--database-url postgresql://…` (a server where it may create and drop databases) every size
is measured twice in the same run, on the SQLite ledger and on a PostgreSQL ledger (a fresh
database per size, dropped afterwards), and a second server is started beside the first: its
first search (on PostgreSQL it builds its own index from the ledger: a new replica's build time)
and the catch-up lag, from a write acknowledged by the first server until the second finds it.

    python benchmarks/speed.py --sizes 10000,100000 --out docs
    python benchmarks/speed.py --sizes 10000,100000 --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import ast
import json
import os
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
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from mcp_memalpha.cli import launch_command

ROOT = Path(__file__).resolve().parents[1]
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
METHODS = ("hybrid", "bm25", "vector")
QUIET = ("--log-level", "WARNING")
LAG_WRITES = 50  # writes whose catch-up lag is timed per size


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


@asynccontextmanager
async def spawned_server(data_dir: Path, env: dict[str, str]) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """`serve --transport http` on data_dir, once its port accepts; terminated on exit."""
    port = free_port()
    process = subprocess.Popen(
        [*launch_command(), "serve", "--transport", "http", "--port", str(port), "--data-dir", str(data_dir), *QUIET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server on {data_dir} exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                await anyio.sleep(0.01)
        yield process, f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


async def measure_server(
    data_dir: Path, env: dict[str, str], questions: list[str], texts: list[str], queries: int
) -> dict[str, Any]:
    from mcp import Client

    started = time.perf_counter()
    result: dict[str, Any] = {}
    async with spawned_server(data_dir, env) as (process, url), Client(url, read_timeout_seconds=120) as client:
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
    return result


async def measure_catch_up(
    first_dir: Path, second_dir: Path, env: dict[str, str], questions: list[str]
) -> dict[str, Any]:
    """A second server beside the first: its first search, then the lag from a write acknowledged
    by the first until a search on the second finds it (one search round trip is its resolution)."""
    from mcp import Client

    result: dict[str, Any] = {}
    async with (
        spawned_server(first_dir, env) as (_, first_url),
        spawned_server(second_dir, env) as (_, second_url),
        Client(first_url, read_timeout_seconds=600) as writer,
        Client(second_url, read_timeout_seconds=600) as reader,
    ):
        await writer.call_tool("search_memory", {"query": questions[0]})
        begin = time.perf_counter()
        await reader.call_tool("search_memory", {"query": questions[0]})
        result["second_first_search_ms"] = (time.perf_counter() - begin) * 1000
        lags = []
        for i in range(LAG_WRITES):
            word = f"catchup{random.randrange(16**8):08x}"
            arguments = {"memory_type": "semantic", "content": f"Probe {i} of the catch-up lag: {word}."}
            reply = await writer.call_tool("new_memory_insert", arguments)
            assert not reply.is_error, reply.content
            acknowledged = time.perf_counter()
            while True:
                found = await reader.call_tool("search_memory", {"query": word, "search_method": "bm25", "top_k": 1})
                if any(word in hit["text"] for hit in found.structured_content["results"]):  # type: ignore[index]
                    break
                assert time.perf_counter() - acknowledged < 60, f"the second server never found {word}"
            lags.append((time.perf_counter() - acknowledged) * 1000)
        result["lag_p50"] = statistics.median(lags)
        result["lag_p95"] = percentile(lags, 0.95)
    return result


@contextmanager
def ledger_database(server_url: str | None, size: int) -> Iterator[str | None]:
    """None for the SQLite ledger; else a new PostgreSQL database on that server, dropped after."""
    if server_url is None:
        yield None
        return
    import psycopg

    name = f"memalpha_speed_{size}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_size(
    size: int, texts: list[str], questions: list[str], queries: int, work: Path, server_url: str | None
) -> dict[str, Any]:
    backend = "postgres" if server_url else "sqlite"
    rng = random.Random(size)
    data_dir, dump = work / f"data{size}-{backend}", work / f"items{size}.jsonl"
    if not dump.exists():
        write_import_file(dump, texts, size, rng)
    with ledger_database(server_url, size) as database_url:
        env = {k: v for k, v in os.environ.items() if k != "MEMALPHA_DATABASE_URL"}
        if database_url:  # served as the README's deployment serves replicas
            env |= {"MEMALPHA_DATABASE_URL": database_url, "MEMALPHA_HTTP_STATELESS": "true"}
        started = time.perf_counter()
        subprocess.run(
            [*launch_command(), "import", str(dump), "--data-dir", str(data_dir)],
            check=True,
            capture_output=True,
            env=env,
        )
        import_s = time.perf_counter() - started
        result = anyio.run(measure_server, data_dir, env, questions, texts, queries)
        disk_mb = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()) / 1e6
        # On PostgreSQL the second server is a new replica with its own (empty) index folder; on
        # SQLite a second process on the same data directory (one ledger file, one index).
        second_dir = work / f"replica{size}" if database_url else data_dir
        result |= anyio.run(measure_catch_up, data_dir, second_dir, env, questions)
    return result | {"items": size, "backend": backend, "import_per_s": size / import_s, "disk_mb": disk_mb}


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
    ("data directory on disk (MB; on PostgreSQL the index alone)", "disk_mb", "{:,.0f}"),
    (
        "a second server's first search (ms; PostgreSQL: a new replica builds its index)",
        "second_first_search_ms",
        "{:,.0f}",
    ),
    (
        "catch-up lag: acknowledged on one server -> found on the other, p50 / p95 (ms)",
        ("lag_p50", "lag_p95"),
        "{:.0f} / {:.0f}",
    ),
]


def labels(results: list[dict[str, Any]]) -> list[str]:
    """Each result's column name: its size, and its ledger when the run measured both."""
    several = len({r["backend"] for r in results}) > 1
    return [f"{r['items']:,} items" + (f", {r['backend']}" if several else "") for r in results]


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| measure | " + " | ".join(labels(results)) + " |"]
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
    for n, (result, label) in enumerate(zip(results, labels(results), strict=True)):
        xs = [i + n * width for i in range(len(METHODS))]
        p50 = [result[f"{m}_p50"] for m in METHODS]
        p95 = [result[f"{m}_p95"] - result[f"{m}_p50"] for m in METHODS]
        ax.bar(xs, p50, width, yerr=[[0] * len(METHODS), p95], capsize=4, label=label)
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
    parser.add_argument(
        "--database-url",
        help="also measure a PostgreSQL ledger on this server (it creates and drops a database per size)",
    )
    args = parser.parse_args()
    texts, questions = corpus()
    work = Path(tempfile.mkdtemp(prefix="memalpha-speed-"))
    results = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            for server_url in (None, args.database_url) if args.database_url else (None,):
                print(
                    f"measuring {size:,} items on {'PostgreSQL' if server_url else 'SQLite'} ...",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(run_size(size, texts, questions, args.queries, work, server_url))
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
