"""Soak test: several server processes on ONE data directory, stdio and HTTP mixed, each driven by
a client doing random inserts, updates with expected_version, deletes with expected_version and
searches over a shared pool of ids, so that writers collide on purpose.

Every acknowledged write and every refusal is recorded. At the end:
- the operation log holds exactly the acknowledged writes (none lost, none unexpected, no insert
  applied twice, no version written twice), and each item is what its last acknowledged write
  made it;
- every refused write was a real conflict: the version it reported is newer than the one
  expected and was written, with the content it reported, by an acknowledged write of another
  client (or the item had been deleted by an acknowledged delete);
- no search ever returned an item whose delete had been acknowledged before it started, or a
  version with content nobody wrote; every live item is found by the unique token in its
  content and no deleted one by the token it had;
- `mcp-memalpha doctor` reports the data directory healthy.

    python benchmarks/soak.py --processes 8 --operations 5000 --seed 1 -o soak.md

With `--database-url postgresql://…` (an empty database) it soaks the PostgreSQL deployment
instead: `--replicas` stateless HTTP replicas and `--workers` curation workers on the database,
each with a data directory of its own, the clients' requests spread over the live replicas by a
balancer in the client (3% of them `memorize`, whose jobs write in a namespace of their own), and
`--kills` SIGKILLs of a random replica or worker during the run, each restarted on its data
directory; once the workers drain the queue, every job must have been applied exactly once. A write whose
reply was lost with a killed replica is "in doubt": it may or may not be in the ledger, and the
checks accept either, but nothing else. Afterwards every replica's search is checked against the
ledger (each replica searched for every item).
"""

from __future__ import annotations

import ast
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
import anyio.to_thread
import click
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from benchmarks.reliability import (
    ItemState,
    LedgerSnapshot,
    Op,
    finish,
    markdown_table,
    percentile,
    read_ledger,
    run_doctor,
    token_of,
)
from mcp_memalpha.http_security import NAMESPACE_HEADER
from tests.conftest import command, connect, free_port, http_server, server_env, stdio_params, wait_for_port

WORDS = ("heron", "river", "garden", "tea", "train", "violin", "market", "winter", "letter", "bridge", "lantern")
HOT = 12  # writes aim at the newest ids most of the time, so clients collide
IN_DOUBT = "in doubt: the reply was lost"
# The server's back-pressure (errors.QueueFull): a tenant's queue at policy_max_queue refuses more
# chunks until some finish. Counted, not a problem: nothing was queued, and the client was told.
QUEUE_FULL = "unfinished memorize jobs, the limit"
CONFLICT = re.compile(r"is at version (\d+), not (\d+);.*Its current content is: (.*)\. Merge your change", re.S)


@dataclass(frozen=True)
class Ack:
    """An acknowledged write: what the server said it wrote."""

    client: int
    kind: str  # insert, update, delete
    memory_id: str
    version: int
    content: str | None  # None for a delete


@dataclass(frozen=True)
class Refusal:
    client: int
    kind: str  # update, delete
    memory_id: str
    expected: int
    current: int | None  # None: the item had been deleted
    current_content: str | None


@dataclass
class Shared:
    """What all clients see and record (one event loop, so no locks)."""

    pool: list[str] = field(default_factory=list)  # ids believed live, newest last
    acks: list[Ack] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    deleted_seq: dict[str, int] = field(default_factory=dict)  # id -> order of its acknowledged delete
    deletes: int = 0
    seen_in_search: set[tuple[str, int, str]] = field(default_factory=set)
    anomalies: list[str] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    latency_s: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    in_doubt: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # kind, id, content
    lost_replies: int = 0  # calls whose reply never came (a killed replica), reads included
    memorize_share: float = 0.0  # with curation workers: the share of operations that queue a job
    jobs: list[str] = field(default_factory=list)  # acknowledged memorize jobs
    queue_full: int = 0  # memorize calls refused because the namespace's queue was at its limit

    def doubted(self, op: Op) -> bool:
        """Whether a logged operation nobody acknowledged is a write whose reply was lost."""
        if op.op == "insert":
            return ("insert", None, op.content) in self.in_doubt
        kind = "delete" if op.content is None else "update"
        return (kind, op.item_id, op.content) in self.in_doubt


@dataclass
class SoakReport:
    processes: int = 0
    replicas: int = 0  # PostgreSQL: HTTP replicas on the database
    workers: int = 0  # PostgreSQL: curation workers
    kills: Counter[str] = field(default_factory=Counter)  # replica, worker
    in_doubt: int = 0
    jobs: Any = None  # PostgreSQL with workers: a JobCheck
    queue_full: int = 0  # memorize calls refused by the namespace's queue limit (back-pressure)
    transports: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    acknowledged: int = 0
    conflicts: int = 0
    refused_deleted: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    wrong_final: int = 0
    bad_refusals: int = 0
    search_violations: int = 0
    live_checked: int = 0
    deleted_checked: int = 0
    doctor: str = ""
    latency_s: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        ops = self.operations
        calls = [s for values in self.latency_s.values() for s in values]
        writes = [s for t in ("new_memory_insert", "memory_update", "memory_delete") for s in self.latency_s.get(t, [])]
        searches = self.latency_s.get("search_memory", [])
        if self.replicas:
            servers = [
                (
                    "HTTP replicas / curation workers on one PostgreSQL / clients",
                    f"{self.replicas} / {self.workers} / {self.processes}",
                ),
                (
                    "SIGKILLs (and restarts) during the run: replicas / workers",
                    f"{self.kills['replica']} / {self.kills['worker']}",
                ),
                ("writes in doubt (reply lost with a killed replica)", f"{self.in_doubt}"),
            ]
            if self.jobs is not None:
                jobs = self.jobs
                servers.append(
                    (
                        "memorize jobs: queued / done / failed / rerun after a kill",
                        f"{jobs.queued} / {jobs.done} / {jobs.failed} / {jobs.rerun}",
                    )
                )
                servers.append(
                    (
                        "memories the jobs wrote (live) / an interrupted attempt's, reverted by the rerun",
                        f"{jobs.written} / {jobs.reverted}",
                    )
                )
                servers.append(
                    (
                        "jobs unfinished / missing / applied twice",
                        f"{jobs.unfinished} / {jobs.missing} / {jobs.twice}",
                    )
                )
                servers.append(("memorize calls refused: the namespace's queue at its limit", f"{self.queue_full}"))
        else:
            servers = [
                (
                    "server processes (stdio / HTTP)",
                    f"{self.processes} ({self.transports['stdio']} / {self.transports['http']})",
                )
            ]
        return markdown_table(
            [
                *servers,
                ("operations (insert / update / delete / search)", f"{sum(ops.values()):,} ({_split(ops)})"),
                ("acknowledged writes", f"{self.acknowledged:,}"),
                ("refused: version conflicts / already deleted", f"{self.conflicts:,} / {self.refused_deleted:,}"),
                ("lost", f"{self.lost}"),
                ("duplicates", f"{self.duplicates}"),
                ("unexpected in the ledger / wrong final state", f"{self.unexpected} / {self.wrong_final}"),
                ("refusals that were not real conflicts", f"{self.bad_refusals}"),
                ("searches returning a deleted item or unwritten content", f"{self.search_violations}"),
                (
                    "live items found by their token / deleted ones not found",
                    f"{self.live_checked:,} / {self.deleted_checked:,}",
                ),
                ("throughput, all clients (operations/s)", f"{sum(ops.values()) / self.seconds:,.0f}"),
                ("latency per tool call p50 / p95 (ms)", _ms(calls)),
                ("latency per write p50 / p95 (ms)", _ms(writes)),
                ("latency per search p50 / p95 (ms)", _ms(searches)),
                ("`mcp-memalpha doctor`", self.doctor),
            ]
        )


def _split(ops: Counter[str]) -> str:
    return " / ".join(f"{ops[kind]:,}" for kind in ("insert", "update", "delete", "search"))


def _ms(seconds: list[float]) -> str:
    return f"{percentile(seconds, 0.5) * 1000:.1f} / {percentile(seconds, 0.95) * 1000:.1f}"


# ---- one client -----------------------------------------------------------------------------


class Driver:
    """One client on one server: a random mix of operations, recording what it was told."""

    def __init__(self, number: int, client: Client, shared: Shared, rng: random.Random) -> None:
        self.number = number
        self.client = client
        self.shared = shared
        self.rng = rng
        self.versions: dict[str, int] = {}  # the version it last saw of each id (maybe stale)
        self.count = 0

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """The structured result, or None and the error text."""
        started = time.perf_counter()
        try:
            result = await self.client.call_tool(tool, arguments)
        except Exception as exc:  # the reply was lost (a killed replica): written or not, nobody knows
            if tool in ("new_memory_insert", "memory_update", "memory_delete"):
                content = arguments.get("content", arguments.get("new_content"))
                kind = {"new_memory_insert": "insert", "memory_update": "update", "memory_delete": "delete"}[tool]
                self.shared.in_doubt.append((kind, arguments.get("memory_id"), content))
            self.shared.lost_replies += 1
            return None, f"{IN_DOUBT} ({type(exc).__name__}: {exc})"
        self.shared.latency_s[tool].append(time.perf_counter() - started)
        if result.is_error:
            return None, " ".join(getattr(part, "text", "") for part in result.content)
        return result.structured_content or {}, ""

    async def run(self, operations: int, progress: Any) -> None:
        for _ in range(operations):
            roll = self.rng.random()
            if self.shared.memorize_share and self.rng.random() < self.shared.memorize_share:
                await self.memorize()
            elif roll < 0.3 or not self.shared.pool:
                await self.insert()
            elif roll < 0.65:
                await self.update()
            elif roll < 0.75:
                await self.delete()
            else:
                await self.search()
            progress.update(1)

    async def memorize(self) -> None:
        """Queue a chunk for the curation workers (with --workers)."""
        self.count += 1
        chunk = f"User: my friend {self.rng.choice(WORDS)}{self.number}x{self.count} moved to {self.rng.choice(WORDS)}."
        data, error = await self.call("memorize", {"chunk": chunk})
        self.shared.operations["memorize"] += 1
        if data is not None:
            self.shared.jobs.append(data["job_id"])
        elif QUEUE_FULL in error:
            self.shared.queue_full += 1
        elif not error.startswith(IN_DOUBT):
            self.shared.anomalies.append(f"memorize refused: {error}")

    def target(self) -> str:
        pool = self.shared.pool
        return self.rng.choice(pool[-HOT:] if self.rng.random() < 0.7 else pool)

    async def insert(self) -> None:
        self.count += 1
        words = " ".join(self.rng.sample(WORDS, 3))
        content = f"client {self.number} notes {words} sk{self.number}x{self.count}"
        data, error = await self.call("new_memory_insert", {"memory_type": "semantic", "content": content})
        self.shared.operations["insert"] += 1
        if error.startswith(IN_DOUBT):
            return
        if data is None:
            self.shared.anomalies.append(f"insert refused: {error}")
            return
        self.record(Ack(self.number, "insert", data["memory_id"], data["version"], content))
        self.shared.pool.append(data["memory_id"])

    async def version_of(self, memory_id: str) -> int | None:
        """The version it believes: half the time its own (maybe stale) memory, else a fresh read."""
        if memory_id in self.versions and self.rng.random() < 0.5:
            return self.versions[memory_id]
        data, _ = await self.call("memory_get", {"memory_ids": [memory_id]})
        found = (data or {}).get("memories", [])
        if found:
            self.versions[memory_id] = found[0]["version"]
            return int(found[0]["version"])
        return self.versions.get(memory_id)  # deleted meanwhile: try anyway, to be refused

    async def update(self) -> None:
        memory_id = self.target()
        expected = await self.version_of(memory_id) or 1
        self.count += 1
        content = f"client {self.number} revised {' '.join(self.rng.sample(WORDS, 3))} sk{self.number}x{self.count}"
        arguments = {"memory_type": "semantic", "memory_id": memory_id, "new_content": content}
        data, error = await self.call("memory_update", arguments | {"expected_version": expected})
        self.shared.operations["update"] += 1
        if error.startswith(IN_DOUBT):
            return
        if data is not None:
            self.record(Ack(self.number, "update", memory_id, data["version"], content))
        else:
            self.refused("update", memory_id, expected, error)

    async def delete(self) -> None:
        memory_id = self.target()
        expected = await self.version_of(memory_id) or 1
        arguments = {"memory_type": "semantic", "memory_id": memory_id, "expected_version": expected}
        data, error = await self.call("memory_delete", arguments)
        self.shared.operations["delete"] += 1
        if error.startswith(IN_DOUBT):
            return
        if data is None:
            self.refused("delete", memory_id, expected, error)
            return
        self.record(Ack(self.number, "delete", memory_id, data["version"], None))
        self.shared.deletes += 1
        self.shared.deleted_seq[memory_id] = self.shared.deletes
        if memory_id in self.shared.pool:
            self.shared.pool.remove(memory_id)

    async def search(self) -> None:
        """By the token of some acknowledged write (maybe superseded), or by a few words."""
        pick = self.rng.choice(self.shared.acks) if self.shared.acks else None
        query = token_of(pick.content) if pick and pick.content else " ".join(self.rng.sample(WORDS, 2))
        method = self.rng.choice(["hybrid", "bm25", "vector"])
        deletes_before = self.shared.deletes
        data, error = await self.call(
            "search_memory", {"query": query, "search_method": method, "top_k": 10, "excerpt_tokens": 0}
        )
        self.shared.operations["search"] += 1
        if error.startswith(IN_DOUBT):
            return
        if data is None:
            self.shared.anomalies.append(f"search refused: {error}")
            return
        for hit in data["results"]:
            self.versions[hit["memory_id"]] = max(hit["version"], self.versions.get(hit["memory_id"], 0))
            self.shared.seen_in_search.add(
                (hit["memory_id"], hit["version"], hit["text"])
            )  # no event time: text is content
            if self.shared.deleted_seq.get(hit["memory_id"], deletes_before + 1) <= deletes_before:
                self.shared.anomalies.append(f"search {query!r} returned {hit['memory_id']}, deleted before it began")

    def record(self, ack: Ack) -> None:
        self.shared.acks.append(ack)
        self.versions[ack.memory_id] = ack.version

    def refused(self, kind: str, memory_id: str, expected: int, error: str) -> None:
        if "(it was deleted at" in error:
            self.shared.refusals.append(Refusal(self.number, kind, memory_id, expected, None, None))
            return
        match = CONFLICT.search(error)
        if match is None:
            self.shared.anomalies.append(f"{kind} of {memory_id} refused for another reason: {error}")
            return
        current, content = int(match.group(1)), ast.literal_eval(match.group(3))
        self.shared.refusals.append(Refusal(self.number, kind, memory_id, expected, current, content))
        self.versions[memory_id] = current


# ---- the checks -----------------------------------------------------------------------------


def check_log(shared: Shared, ledger: LedgerSnapshot, report: SoakReport) -> None:
    """The operation log holds exactly the acknowledged writes, each once."""
    acked = Counter((a.memory_id, a.version, a.content) for a in shared.acks)
    logged = Counter((op.item_id, op.version, op.content) for op in ledger.ops if op.item_id)
    doubted = Counter((op.item_id, op.version, op.content) for op in ledger.ops if op.item_id and shared.doubted(op))
    report.lost = sum((acked - logged).values())
    report.unexpected = sum((logged - acked - doubted).values())
    per_version = Counter((op.item_id, op.version) for op in ledger.ops if op.item_id)
    inserted = Counter(op.content for op in ledger.ops if op.op == "insert")
    report.duplicates = sum(n - 1 for n in per_version.values() if n > 1) + sum(
        n - 1 for n in inserted.values() if n > 1
    )
    report.duplicates += sum(n - 1 for n in Counter((a.memory_id, a.version) for a in shared.acks).values() if n > 1)
    if ledger.integrity != "ok":
        report.problems.append(f"integrity_check: {ledger.integrity}")


def check_final_state(shared: Shared, ledger: LedgerSnapshot, report: SoakReport) -> None:
    """Each item is what its last acknowledged write (highest version) made it."""
    last: dict[str, Ack] = {}
    for ack in shared.acks:
        if ack.memory_id not in last or ack.version > last[ack.memory_id].version:
            last[ack.memory_id] = ack
    landed = {op.item_id: op for op in ledger.ops if op.item_id and shared.doubted(op)}  # the last, by id
    for memory_id, ack in last.items():
        state = ledger.items.get(memory_id)
        deleted = ack.content is None
        late = landed.get(memory_id)
        if state is not None and late is not None and late.version > ack.version:
            ack = Ack(-1, "in doubt", memory_id, late.version, late.content)  # a write whose reply was lost
            deleted = late.content is None
        if (
            state is None
            or (state.version, state.deleted) != (ack.version, deleted)
            or (not deleted and state.content != ack.content)
        ):
            report.wrong_final += 1
            report.problems.append(f"{memory_id}: last acknowledged {ack}, ledger has {state}")


def check_refusals(shared: Shared, report: SoakReport, ledger: LedgerSnapshot | None = None) -> None:
    """Each refusal names a newer version another client wrote, or an acknowledged delete (or, with
    `ledger`, one a write in doubt made: logged, its reply lost)."""
    by_version = {(a.memory_id, a.version): a for a in shared.acks}
    deleted = {a.memory_id for a in shared.acks if a.kind == "delete"}
    for op in ledger.ops if ledger else []:
        if op.item_id and shared.doubted(op):
            by_version.setdefault((op.item_id, op.version), Ack(-1, "in doubt", op.item_id, op.version, op.content))
            if op.content is None:
                deleted.add(op.item_id)
    for refusal in shared.refusals:
        if refusal.current is None:
            report.refused_deleted += 1
            real = refusal.memory_id in deleted
        else:
            report.conflicts += 1
            writer = by_version.get((refusal.memory_id, refusal.current))
            real = (
                refusal.current > refusal.expected
                and writer is not None
                and writer.client != refusal.client
                and writer.content == refusal.current_content
            )
        if not real:
            report.bad_refusals += 1
            report.problems.append(f"not a real conflict: {refusal}")


def check_seen_in_search(shared: Shared, report: SoakReport, ledger: LedgerSnapshot | None = None) -> None:
    """No search returned what nobody wrote (with `ledger`: writes in doubt count as written)."""
    written: set[tuple[str | None, int, str | None]] = {(a.memory_id, a.version, a.content) for a in shared.acks}
    written |= {(op.item_id, op.version, op.content) for op in (ledger.ops if ledger else []) if shared.doubted(op)}
    unwritten = shared.seen_in_search - written
    report.search_violations = len(unwritten) + sum(a.startswith("search ") for a in shared.anomalies)
    report.problems += [f"search returned {hit}, which no acknowledged write produced" for hit in unwritten]


async def sweep_search(clients: list[Client], ledger: LedgerSnapshot, report: SoakReport) -> None:
    """Every live item is found by its token; no deleted item by the token it had last."""
    last_content: dict[str, str] = {}
    for op in ledger.ops:
        if op.item_id and op.content is not None:
            last_content[op.item_id] = op.content
    checks = sorted(ledger.items.items())

    async def worker(index: int, client: Client) -> None:
        for n, (memory_id, state) in enumerate(checks[index :: len(clients)]):
            token = token_of(last_content[memory_id])
            method = "bm25" if n % 2 else "hybrid"
            found = await client.call_tool("search_memory", {"query": token, "search_method": method, "top_k": 3})
            ids = [hit["memory_id"] for hit in (found.structured_content or {}).get("results", [])]
            if state.deleted and memory_id in ids:
                report.search_violations += 1
                report.problems.append(f"search for {token} returned the deleted {memory_id}")
            elif not state.deleted and ids[:1] != [memory_id]:
                report.search_violations += 1
                report.problems.append(f"search ({method}) for {token} returned {ids}, not {memory_id}")
            report.deleted_checked += state.deleted
            report.live_checked += not state.deleted

    async with anyio.create_task_group() as group:
        for index, client in enumerate(clients):
            group.start_soon(worker, index, client)


# ---- the run --------------------------------------------------------------------------------


@asynccontextmanager
async def open_clients(data_dir: Path, processes: int, report: SoakReport) -> AsyncIterator[list[Client]]:
    """One server process per client: even ones over stdio, odd ones over streamable HTTP."""
    async with AsyncExitStack() as stack:
        clients = []
        for number in range(processes):
            if number % 2 == 0:
                target: Any = stdio_params(data_dir, "--log-level", "WARNING")
                report.transports["stdio"] += 1
            else:
                target, _process = stack.enter_context(http_server(data_dir, "--log-level", "WARNING"))
                report.transports["http"] += 1
            clients.append(await stack.enter_async_context(connect(target)))
        yield clients


async def run_soak(data_dir: Path, processes: int, operations: int, seed: int, progress: Any = None) -> SoakReport:
    """Drive `processes` servers with `operations` operations each, then check everything."""
    report, shared = SoakReport(processes=processes), Shared()
    async with open_clients(data_dir, processes, report) as clients:
        drivers = [Driver(n, client, shared, random.Random(seed * 1000 + n)) for n, client in enumerate(clients)]
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for driver in drivers:
                group.start_soon(driver.run, operations, progress or _NULL)
        report.seconds = time.perf_counter() - started
        ledger = read_ledger(data_dir / "memory.db")
        await sweep_search(clients, ledger, report)
    report.operations, report.latency_s = shared.operations, dict(shared.latency_s)
    report.acknowledged = len(shared.acks)
    if shared.lost_replies:  # nothing is killed here: every call must be answered
        report.problems.append(f"{shared.lost_replies} calls got no reply")
    check_log(shared, ledger, report)
    check_final_state(shared, ledger, report)
    check_refusals(shared, report)
    check_seen_in_search(shared, report)
    report.problems += shared.anomalies
    status, output = run_doctor(data_dir)
    report.doctor = "healthy" if status == 0 else f"PROBLEM (exit {status})"
    if status != 0:
        report.problems.append(f"mcp-memalpha doctor: {output}")
    return report


# ---- PostgreSQL: replicas behind a balancer, killed during the run ---------------------------


class Fleet:
    """Stateless HTTP replicas and curation workers on one PostgreSQL database, each process on a
    data directory of its own (its search index)."""

    def __init__(self, work: Path, database_url: str, workers: int) -> None:
        self.work = work
        self.env = server_env(MEMALPHA_DATABASE_URL=database_url, MEMALPHA_POLICY_LEASE_SECONDS=str(LEASE_S))
        self.serve_options = ["--policy", "default", "--no-curation"] if workers else []
        self.serve_options += ["--auth-file", str(self.write_tokens())]
        self.replicas: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}  # number -> port, process
        self.workers: dict[int, subprocess.Popen[bytes]] = {}

    def write_tokens(self) -> Path:
        """One token for every client: the clients' namespace first, the curator's jobs' beside it
        (so the curator never edits the memories whose every version the checks account for)."""
        tokens = self.work / "tokens.toml"
        tokens.write_text(
            f'[[tokens]]\nname = "soak"\ntoken = "{TOKEN}"\nnamespaces = ["default", "{CURATED}"]\n'
            "rate_limit_per_minute = 1000000\n"
        )
        tokens.chmod(0o600)
        return tokens

    def start_replica(self, number: int) -> None:
        port = free_port()
        argv = [*command(), "serve", "--transport", "http", "--stateless", "--port", str(port), *self.serve_options]
        argv += ["--data-dir", str(self.work / f"replica{number}"), "--log-level", "WARNING"]
        process = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, process, timeout=120)
        self.replicas[number] = (port, process)

    def start_worker(self, number: int) -> None:
        argv = [*command(), "worker", "--policy", "default", "--poll-seconds", "0.5"]
        argv += ["--data-dir", str(self.work / f"worker{number}"), "--log-level", "WARNING"]
        self.workers[number] = subprocess.Popen(
            argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def kill(self, kind: str, number: int) -> None:
        """SIGKILL a replica or a worker, and start it again on its data directory."""
        process = self.replicas.pop(number)[1] if kind == "replica" else self.workers.pop(number)
        process.send_signal(signal.SIGKILL)
        process.wait()
        (self.start_replica if kind == "replica" else self.start_worker)(number)

    def ports(self) -> list[int]:
        return [port for port, _ in self.replicas.values()]

    def url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.replicas[number][0]}/mcp"

    def stop(self) -> None:
        processes = [process for _, process in self.replicas.values()] + list(self.workers.values())
        self.replicas, self.workers = {}, {}
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


LEASE_S = 10  # a killed worker's job is claimed again this long after its last renewal
TOKEN = "soak-token-0123456789abcdef"
CURATED = "curated"  # the namespace the memorize jobs write in
MEMORIZE_SHARE = 0.03  # with workers: of the clients' operations, this share queues a memorize job


class Balancer(httpx2.AsyncBaseTransport):
    """A load balancer in the client: each request to a random live replica; one that could not be
    connected to goes to another (it never arrived), one cut off after it was sent fails (its
    effect unknown), as behind a real load balancer."""

    def __init__(self, fleet: Fleet, rng: random.Random) -> None:
        self.fleet = fleet
        self.rng = rng
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and b'"name":"memorize"' in (await request.aread()).replace(b" ", b""):
            request.headers[NAMESPACE_HEADER] = CURATED
        for _ in range(600):
            ports = self.fleet.ports()
            if not ports:
                await anyio.sleep(0.1)
                continue
            request.url = request.url.copy_with(port=self.rng.choice(ports))
            try:
                return await self.inner.handle_async_request(request)
            except httpx2.ConnectError:
                await anyio.sleep(0.05)
            except httpx2.TransportError as exc:  # sent, then cut off: what a load balancer answers
                return httpx2.Response(502, text=f"the replica went away: {exc}", request=request)
        return httpx2.Response(503, text="no replica answered", request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class JobCheck:
    queued: int = 0  # acknowledged memorize jobs
    done: int = 0
    failed: int = 0
    rerun: int = 0  # claimed again after an interrupted attempt
    unfinished: int = 0
    missing: int = 0  # acknowledged, not in the ledger
    twice: int = 0  # an earlier attempt's write still live: the chunk applied twice
    written: int = 0  # memories the jobs created that are live
    reverted: int = 0  # memories an interrupted attempt created, deleted again by the next claim


def read_postgres_ledger(database_url: str) -> LedgerSnapshot:
    """What `read_ledger` reads, of the clients' namespace (the curator's jobs write in another),
    in one REPEATABLE READ snapshot; the whole log's numbers must run 1, 2, 3... without a gap."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = LedgerSnapshot(integrity="ok")
        items = conn.execute("SELECT id, version, content, deleted_at FROM items WHERE namespace = 'default'")
        for item_id, version, content, deleted_at in items:
            snapshot.items[item_id] = ItemState(version, content, deleted_at is not None)
        rows = conn.execute("SELECT seq, op, item_id, version, content, namespace FROM ops ORDER BY seq").fetchall()
        snapshot.ops = [Op(*row[:5]) for row in rows if row[5] == "default"]
        if [row[0] for row in rows] != list(range(1, len(rows) + 1)):
            snapshot.integrity = "the log's sequence numbers have gaps or repeats"
        return snapshot


def check_jobs(database_url: str, acknowledged: list[str]) -> JobCheck:
    """Every acknowledged job in the ledger and finished; a done job's effect is its last
    attempt's: every memory an earlier attempt created (logged at or before the job's base_seq)
    is deleted again (reverted); a failed job's memories all are, but those it lists as kept."""
    import json

    import psycopg

    found = JobCheck(queued=len(acknowledged))
    with psycopg.connect(database_url) as conn:
        jobs = {row[0]: row[1:] for row in conn.execute("SELECT id, state, attempts, base_seq, result FROM jobs")}
        created = conn.execute(
            "SELECT o.job_id, o.seq, o.item_id, i.deleted_at IS NULL FROM ops o JOIN items i ON i.id = o.item_id "
            "WHERE o.op = 'insert' AND o.job_id IS NOT NULL"
        ).fetchall()
    found.missing = sum(job not in jobs for job in acknowledged)
    for state, attempts, _, _ in jobs.values():
        found.done += state == "done"
        found.failed += state == "failed"
        found.unfinished += state in ("queued", "running")
        found.rerun += attempts > 1
    for job_id, seq, item_id, live in created:
        state, _, base_seq, result = jobs[job_id]
        kept = {entry.get("memory_id") for entry in (json.loads(result or "{}").get("kept") or [])}
        earlier = seq <= base_seq
        if live and item_id not in kept and (earlier or state == "failed"):
            found.twice += 1
        found.written += live
        found.reverted += earlier and not live
    return found


async def wait_for_jobs(database_url: str, stall_seconds: float) -> None:
    """Until no job is queued or running (the workers drain the queue), or until none has finished
    for `stall_seconds`: a full-size run queues hundreds of jobs, so no fixed deadline fits."""
    import psycopg

    last, since = -1, time.monotonic()
    while time.monotonic() - since < stall_seconds:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()
        left = 0 if row is None else int(row[0])
        if left == 0:
            return
        if left != last:
            print(f"draining the queue: {left} jobs left", file=sys.stderr, flush=True)
            last, since = left, time.monotonic()
        await anyio.sleep(1.0)


async def chaos(fleet: Fleet, kills: int, shared: Shared, total: int, rng: random.Random, report: SoakReport) -> None:
    """`kills` SIGKILLs of a random replica or worker, spread evenly over the run's `total`
    operations, each restarted at once."""
    for kill in range(1, kills + 1):
        while sum(shared.operations.values()) < kill * total / (kills + 1):
            await anyio.sleep(0.1)
        targets = [("replica", n) for n in sorted(fleet.replicas)] + [("worker", n) for n in sorted(fleet.workers)]
        kind, number = rng.choice(targets)
        await anyio.to_thread.run_sync(fleet.kill, kind, number)
        report.kills[kind] += 1


async def run_postgres_soak(
    work: Path,
    database_url: str,
    replicas: int,
    workers: int,
    processes: int,
    operations: int,
    kills: int,
    seed: int,
    progress: Any = None,
) -> SoakReport:
    """`processes` clients over `replicas` replicas, with `workers` curation workers running the
    memorize jobs they queue, `kills` SIGKILLs among them during the run; then the checks of
    `run_soak` (writes in doubt allowed either way), a sweep of every item on every replica, and
    the jobs' exactly-once check once the workers have drained the queue."""
    report = SoakReport(processes=processes, replicas=replicas, workers=workers)
    shared = Shared(memorize_share=MEMORIZE_SHARE if workers else 0.0)
    rng = random.Random(seed)
    fleet = Fleet(work, database_url, workers)
    try:
        for number in range(replicas):
            await anyio.to_thread.run_sync(fleet.start_replica, number)
        for number in range(workers):
            fleet.start_worker(number)
        async with AsyncExitStack() as stack:
            clients = []
            for number in range(processes):
                balancer = Balancer(fleet, random.Random(seed * 7 + number))
                headers = {"Authorization": f"Bearer {TOKEN}"}
                http = httpx2.AsyncClient(transport=balancer, headers=headers, timeout=httpx2.Timeout(30, read=120))
                await stack.enter_async_context(http)
                transport = streamable_http_client(fleet.url(0), http_client=http)
                clients.append(await stack.enter_async_context(Client(transport, read_timeout_seconds=120)))
            drivers = [Driver(n, client, shared, random.Random(seed * 1000 + n)) for n, client in enumerate(clients)]
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                group.start_soon(chaos, fleet, kills, shared, processes * operations, rng, report)
                for driver in drivers:
                    group.start_soon(driver.run, operations, progress or _NULL)
            report.seconds = time.perf_counter() - started
        await wait_for_jobs(database_url, 300)
        ledger = read_postgres_ledger(database_url)
        for number in sorted(fleet.replicas):  # every replica's own index, searched for every item
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
                Client(streamable_http_client(fleet.url(number), http_client=http), read_timeout_seconds=120) as client,
            ):
                await sweep_search([client], ledger, report)
    finally:
        fleet.stop()
    report.operations, report.latency_s = shared.operations, dict(shared.latency_s)
    report.acknowledged, report.in_doubt = len(shared.acks), len(shared.in_doubt)
    report.queue_full = shared.queue_full
    check_log(shared, ledger, report)
    check_final_state(shared, ledger, report)
    check_refusals(shared, report, ledger)
    check_seen_in_search(shared, report, ledger)
    report.jobs = check_jobs(database_url, shared.jobs)
    if (report.jobs.unfinished, report.jobs.missing, report.jobs.twice) != (0, 0, 0):
        report.problems.append(f"memorize jobs: {report.jobs}")
    report.problems += shared.anomalies
    status, output = run_doctor(work / "replica0", database_url)
    report.doctor = "healthy" if status == 0 else f"PROBLEM (exit {status})"
    if status != 0:
        report.problems.append(f"mcp-memalpha doctor: {output}")
    return report


class _Null:
    def update(self, _: int) -> None:
        pass


_NULL = _Null()


@click.command()
@click.option("--processes", default=8, show_default=True, help="Server processes (half stdio, half HTTP).")
@click.option("--operations", default=5000, show_default=True, help="Operations per process.")
@click.option("--seed", default=1, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="[default: a temporary folder]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report here.")
@click.option("--database-url", help="Soak the PostgreSQL deployment on this (empty) database instead.")
@click.option("--replicas", default=3, show_default=True, help="With --database-url: HTTP replicas.")
@click.option("--workers", default=2, show_default=True, help="With --database-url: curation workers (SmolLM2).")
@click.option("--kills", default=10, show_default=True, help="With --database-url: SIGKILLs of replicas/workers.")
def main(
    processes: int,
    operations: int,
    seed: int,
    data_dir: Path | None,
    output: Path | None,
    database_url: str | None,
    replicas: int,
    workers: int,
    kills: int,
) -> None:
    """Several servers on one data directory (or replicas on one PostgreSQL) under a random
    colliding load; check nothing is lost."""
    import tempfile

    bar = click.progressbar(length=processes * operations, label="operations", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="memalpha-soak-") as work, bar:
        if database_url:
            soak = partial(run_postgres_soak, Path(work), database_url, replicas, workers, processes, operations, kills)
            report = anyio.run(soak, seed, bar)
        else:
            report = anyio.run(run_soak, data_dir or Path(work) / "data", processes, operations, seed, bar)
    command = f"python benchmarks/soak.py --processes {processes} --operations {operations} --seed {seed}"
    if database_url:
        command += f" --database-url postgresql://… --replicas {replicas} --workers {workers} --kills {kills}"
    text = f"{report.table()}\n\n`{command}`, {report.seconds:.0f} s of load\n"
    if report.problems:
        text += f"\n{len(report.problems)} problems, the first 50:\n"
        text += "\n".join(f"- {problem}" for problem in report.problems[:50]) + "\n"
    finish(text, report.problems, output)


if __name__ == "__main__":
    main()
