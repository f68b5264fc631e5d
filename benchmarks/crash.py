"""Crash harness: SIGKILL a server at random points of a write stream, restart it, and check that
nothing it acknowledged was lost.

Each round starts `mcp-memalpha serve --transport http` on the same data directory, times its
recovery (spawn -> first search answered, which includes catching the index up with the
previous rounds' writes), checks the data directory, then streams writes (inserts, updates and
deletes with expected_version, core updates) until it SIGKILLs the server after a random number
of acknowledged writes plus a random 0-80 ms, so the kill lands anywhere: inside a tool call,
between the ledger commit and the reply, or in the background index sync that follows writes.

After each restart:
- `PRAGMA integrity_check` is ok;
- every acknowledged write is in the ledger at its version with its content, and the operation
  log holds exactly the acknowledged writes; the one write in flight at the kill (sent, never
  acknowledged) may have landed, but only entirely;
- the index, caught up, holds exactly the live items (the checks of `mcp-memalpha doctor`, run
  in-process each round and as the command at the end), and the server finds sampled items by
  their unique token and never returns a deleted one.

    python benchmarks/crash.py --kills 50 --seed 1 -o crash.md
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
import click
from mcp import Client

from benchmarks.reliability import LedgerSnapshot, finish, markdown_table, percentile, read_ledger, run_doctor, token_of
from mcp_memalpha import Memory, Settings
from mcp_memalpha.doctor import diagnose
from tests.conftest import connect, http_server

MAX_KILL_DELAY_S = 0.08


@dataclass(frozen=True)
class Write:
    """One write of the stream, and what the ledger shows once it has landed."""

    tool: str
    arguments: dict[str, Any]
    kind: str  # insert, update, delete, core
    memory_id: str | None  # None for an insert (the server picks the id) and for core
    version: int
    content: str | None  # None for a delete


@dataclass
class Expected:
    """What the acknowledged writes say the ledger holds."""

    items: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # id -> version, content (None: deleted)
    tombstones: dict[str, str] = field(default_factory=dict)  # deleted id -> the content it had
    core: tuple[int, str] = (0, "")
    # operations the log must hold, each (item id or None for core, version, content or None for
    # a deletion): the acknowledged writes, plus in-flight ones found to have landed
    log: Counter[tuple[str | None, int, str | None]] = field(default_factory=Counter)
    pending: Write | None = None  # sent, not acknowledged (yet)

    def live(self) -> list[str]:
        return [item_id for item_id, (_, content) in self.items.items() if content is not None]

    def apply(self, write: Write, memory_id: str | None) -> None:
        if write.kind == "core":
            self.core = (write.version, write.content or "")
        elif memory_id is not None:
            if write.kind == "delete":
                self.tombstones[memory_id] = self.items[memory_id][1] or ""
            self.items[memory_id] = (write.version, write.content)
        self.log[(None if write.kind == "core" else memory_id, write.version, write.content)] += 1


@dataclass
class CrashReport:
    kills: int = 0
    acknowledged: Counter[str] = field(default_factory=Counter)
    in_flight_landed: int = 0
    in_flight_lost: int = 0  # sent but not acknowledged, and not in the ledger: allowed
    ready_s: list[float] = field(default_factory=list)  # spawn -> listening (ledger open, takes calls)
    recovery_s: list[float] = field(default_factory=list)  # spawn -> first search answered
    checks: int = 0
    failed_checks: int = 0
    lost: int = 0
    unexpected: int = 0
    problems: list[str] = field(default_factory=list)
    doctor: str = ""

    def table(self) -> str:
        ack = self.acknowledged
        return markdown_table(
            [
                ("kills (SIGKILL, then restart)", f"{self.kills}"),
                (
                    "writes acknowledged (insert / update / delete / core)",
                    f"{sum(ack.values()):,} ({ack['insert']} / {ack['update']} / {ack['delete']} / {ack['core']})",
                ),
                (
                    "kills during a write: it landed / it did not (the rest fell between writes)",
                    f"{self.in_flight_landed} / {self.in_flight_lost}",
                ),
                ("acknowledged writes lost", f"{self.lost}"),
                ("unexpected changes in the ledger", f"{self.unexpected}"),
                ("post-restart checks passed", f"{self.checks - self.failed_checks} / {self.checks}"),
                ("restart -> taking calls (ledger open), p50 / max (ms)", _p50_max(self.ready_s)),
                ("restart -> first search answered (index caught up), p50 / max (ms)", _p50_max(self.recovery_s)),
                ("`mcp-memalpha doctor` at the end", self.doctor),
            ]
        )


def _p50_max(seconds: list[float]) -> str:
    return f"{percentile(seconds, 0.5) * 1000:,.0f} / {max(seconds, default=0) * 1000:,.0f}"


# ---- the write stream ---------------------------------------------------------------------------


class Stream:
    """Random writes over the live items, each with a unique token at the end of its content."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0

    def next(self, expected: Expected) -> Write:
        self.count += 1
        text = f"crash write {self.count} about herons ck{self.count}"
        live, roll = expected.live(), self.rng.random()
        if roll < 0.4 or not live:
            args = {"memory_type": "semantic", "content": text}
            return Write("new_memory_insert", args, "insert", None, 1, text)
        if roll < 0.85:
            memory_id = self.rng.choice(live)
            version = expected.items[memory_id][0]
            if roll < 0.7:
                args = {"memory_type": "semantic", "memory_id": memory_id, "new_content": text}
                return Write(
                    "memory_update", args | {"expected_version": version}, "update", memory_id, version + 1, text
                )
            args = {"memory_type": "semantic", "memory_id": memory_id, "expected_version": version}
            return Write("memory_delete", args, "delete", memory_id, version + 1, None)
        version = expected.core[0]
        args = {"memory_type": "core", "new_content": f"The user watches herons. {text}", "expected_version": version}
        return Write("memory_update", args, "core", None, version + 1, args["new_content"])


async def write_until_killed(
    url: str, process: subprocess.Popen[bytes], expected: Expected, stream: Stream, report: CrashReport
) -> None:
    """Send writes one after another; SIGKILL the server after a random number of them."""
    target = stream.rng.randint(10, 60)
    delay = stream.rng.uniform(0, MAX_KILL_DELAY_S)
    acked = 0
    killed = anyio.Event()

    async def killer() -> None:
        while acked < target:
            await anyio.sleep(0.001)
        await anyio.sleep(delay)
        process.send_signal(signal.SIGKILL)
        killed.set()

    try:
        async with connect(url) as client, anyio.create_task_group() as group:
            group.start_soon(killer)
            while not killed.is_set():
                write = stream.next(expected)
                expected.pending = write
                result = await client.call_tool(write.tool, write.arguments)
                if result.is_error:  # the only writer, with the right versions: never refused
                    report.problems.append(f"{write.tool} refused: {result.content}")
                    expected.pending = None
                    continue
                data = result.structured_content or {}
                expected.apply(write, data.get("memory_id") or write.memory_id)
                expected.pending = None
                report.acknowledged[write.kind] += 1
                acked += 1
    except Exception:
        # The connection drops as the process dies, possibly before waitpid() can see it dead.
        if not killed.is_set():
            raise
    process.wait()
    report.kills += 1


# ---- checks after a restart -----------------------------------------------------------------


def settle_pending(expected: Expected, ledger: LedgerSnapshot, report: CrashReport) -> None:
    """Decide from the ledger whether the write in flight at the kill landed, and adopt it if so."""
    write, expected.pending = expected.pending, None
    if write is None:
        return
    landed: str | None = None
    if write.kind == "insert":
        landed = next(
            (i for i, s in ledger.items.items() if i not in expected.items and s.content == write.content), None
        )
    elif write.kind == "core":
        landed = "core" if ledger.core[0] == write.version else None
    elif write.memory_id and ledger.items[write.memory_id].version == write.version:
        landed = write.memory_id
    if landed is None:
        report.in_flight_lost += 1
        return
    expected.apply(write, None if write.kind == "core" else landed)
    report.in_flight_landed += 1


def ledger_problems(expected: Expected, ledger: LedgerSnapshot, report: CrashReport) -> list[str]:
    """Every acknowledged write there, nothing else there."""
    problems = [] if ledger.integrity == "ok" else [f"integrity_check: {ledger.integrity}"]
    for item_id, (version, content) in expected.items.items():
        state = ledger.items.get(item_id)
        if (
            state is None
            or state.version != version
            or state.deleted != (content is None)
            or (content is not None and state.content != content)
        ):
            report.lost += 1
            problems.append(f"{item_id}: acknowledged version {version} {content!r}, ledger has {state}")
    extra = ledger.items.keys() - expected.items.keys()
    logged = Counter((op.item_id, op.version, op.content) for op in ledger.ops)
    unlogged, stray = expected.log - logged, logged - expected.log  # compared by content, not counted
    if extra or ledger.core != expected.core or unlogged or stray:
        report.unexpected += len(extra) + (ledger.core != expected.core) + unlogged.total() + stray.total()
        problems.append(
            f"unexpected: items {sorted(extra)}, core {ledger.core} (expected {expected.core}), "
            f"acknowledged writes missing from the log {sorted(unlogged, key=str)[:5]}, "
            f"logged operations nobody acknowledged {sorted(stray, key=str)[:5]}"
        )
    return problems


def index_problems(data_dir: Path, expected: Expected) -> list[str]:
    """The doctor's checks (ledger, schema, index against ledger), without repairing anything."""
    with Memory(Settings(data_dir=data_dir)) as memory:
        report = diagnose(memory, repair=False)
        indexed = memory.index.ids()
    problems = [f"doctor: {problem}" for problem in report.problems]
    if indexed != set(expected.live()):
        problems.append(f"index holds {len(indexed)} ids, {len(expected.live())} items are live")
    return problems


async def search_problems(client: Client, expected: Expected, rng: random.Random) -> list[str]:
    """Sampled live items are found by their token; deleted ones are not, by the token they had."""
    problems = []
    live = expected.live()
    for item_id in rng.sample(live, min(5, len(live))):
        hits = await bm25(client, token_of(expected.items[item_id][1]))
        if not hits or hits[0] != item_id:
            problems.append(f"search for the token of {item_id} returned {hits}")
    for item_id in rng.sample(sorted(expected.tombstones), min(3, len(expected.tombstones))):
        if item_id in await bm25(client, token_of(expected.tombstones[item_id])):
            problems.append(f"search returned the deleted {item_id}")
    return problems


async def bm25(client: Client, query: str) -> list[str]:
    found = await client.call_tool("search_memory", {"query": query, "search_method": "bm25", "top_k": 5})
    return [hit["memory_id"] for hit in (found.structured_content or {}).get("results", [])]


async def check_after_restart(
    url: str, data_dir: Path, started: float, expected: Expected, report: CrashReport, rng: random.Random
) -> None:
    """Time the recovery, settle the write in flight at the kill, then check everything."""
    async with connect(url) as client:
        first = await client.call_tool("search_memory", {"query": "herons", "top_k": 1})
        report.recovery_s.append(time.perf_counter() - started)
        ledger = read_ledger(data_dir / "memory.db")
        settle_pending(expected, ledger, report)
        problems = [] if not first.is_error else [f"first search failed: {first.content}"]
        problems += ledger_problems(expected, ledger, report)
        problems += index_problems(data_dir, expected)
        problems += await search_problems(client, expected, rng)
    report.checks += 1
    report.failed_checks += bool(problems)
    report.problems += [f"after kill {report.kills}: {problem}" for problem in problems]


# ---- the harness ----------------------------------------------------------------------------


async def run_crash(data_dir: Path, kills: int, seed: int, progress: Any = None) -> CrashReport:
    """Start, write until SIGKILLed, restart and check, `kills` times; then the doctor command."""
    rng = random.Random(seed)
    expected, stream, report = Expected(), Stream(rng), CrashReport()
    for round_no in range(kills + 1):
        started = time.perf_counter()
        with http_server(data_dir, "--log-level", "WARNING") as (url, process):
            if round_no:  # a restart after a kill
                report.ready_s.append(time.perf_counter() - started)
                await check_after_restart(url, data_dir, started, expected, report, rng)
            if round_no < kills:
                await write_until_killed(url, process, expected, stream, report)
        if progress is not None:
            progress.update(1)
    status, output = run_doctor(data_dir)
    report.doctor = "healthy" if status == 0 else f"PROBLEM (exit {status})"
    if status != 0:
        report.problems.append(f"mcp-memalpha doctor: {output}")
    return report


@click.command()
@click.option("--kills", default=50, show_default=True, help="SIGKILLs (each followed by a restart and checks).")
@click.option("--seed", default=1, show_default=True, help="Seed of the write stream and the kill points.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="[default: a temporary folder]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report here.")
def main(kills: int, seed: int, data_dir: Path | None, output: Path | None) -> None:
    """SIGKILL a server at random points of a write stream; check nothing acknowledged is lost."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="memalpha-crash-") as work:
        started = time.perf_counter()
        with click.progressbar(length=kills + 1, label="rounds", file=sys.stderr) as bar:
            report = anyio.run(run_crash, data_dir or Path(work) / "data", kills, seed, bar)
        elapsed = time.perf_counter() - started
    text = f"{report.table()}\n\n`python benchmarks/crash.py --kills {kills} --seed {seed}`, {elapsed:.0f} s\n"
    if report.problems:
        text += "\nProblems:\n" + "\n".join(f"- {problem}" for problem in report.problems) + "\n"
    finish(text, report.problems, output)


if __name__ == "__main__":
    main()
