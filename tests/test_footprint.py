"""What an idle server window holds: LanceDB and the embedding model load at the first call, not at start."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.startup import INITIALIZE, receive, send, stop  # the benchmark's own stdio client
from mcp_memalpha import CallContext, Memory, Settings
from tests import postgres
from tests.conftest import call_error, command, connect, server_env, stdio_params


def _loaded(pid: int, library: str) -> bool:
    return library in Path(f"/proc/{pid}/maps").read_text()


def test_lancedb_loads_at_the_first_call_not_at_start(tmp_path: Path) -> None:
    idle_window_then_first_call(tmp_path, [])


def test_an_idle_window_on_postgres_loads_nothing_when_another_process_writes(
    tmp_path: Path, postgres_cluster: postgres.Cluster
) -> None:
    """On a shared PostgreSQL ledger every write NOTIFYs every server: a client window that has not
    been called yet stays idle (only a stateless replica follows the log before its first call)."""
    with postgres_cluster.database() as url:

        def write_elsewhere() -> None:
            with Memory(Settings(data_dir=tmp_path / "other", database_url=url)) as memory:
                memory.insert(CallContext(), "semantic", "Ada keeps bees.")

        idle_window_then_first_call(tmp_path, ["--database-url", url], write_elsewhere)


def idle_window_then_first_call(
    tmp_path: Path, options: list[str], while_idle: Callable[[], None] | None = None
) -> None:
    process = subprocess.Popen(
        [*command(), "serve", "--data-dir", str(tmp_path / "data"), *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(),
    )
    try:
        send(process, INITIALIZE)
        receive(process, 1)
        send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        receive(process, 2)
        if while_idle is not None:
            while_idle()
        time.sleep(3)  # the old warm-up began at once and mapped LanceDB within this
        assert not _loaded(process.pid, "_lancedb.abi3")
        call = {"name": "core_memory_read", "arguments": {}}
        send(process, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call})
        receive(process, 3)
        deadline = time.monotonic() + 240
        while not _loaded(process.pid, "_lancedb.abi3") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _loaded(process.pid, "_lancedb.abi3")  # the first call started the warm-up
    finally:
        stop(process)


def test_the_embedding_model_and_its_neighbours_hold_little_private_memory() -> None:
    """The model's table is mapped from its file and the neighbours stay unparsed: loading both
    adds ~14 MB of private memory (RssAnon), where reading the table and parsing every line
    added ~48 (docs/benchmarks.md, "Footprint"). Measured in a fresh process, libraries imported first."""
    code = (
        "import numpy, tokenizers\n"
        "from pathlib import Path\n"
        "from mcp_memalpha.embedding import Embedder\n"
        "anon = lambda: next(int(l.split()[1]) for l in Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('RssAnon:')) / 1024\n"
        "before = anon(); e = Embedder(); e.embed(['warm-up']); e.synonyms().of('profession')\n"
        "print(anon() - before)\n"
    )
    added = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert added < 30, f"{added:.0f} MB"


def test_lancedb_is_imported_without_its_rest_client_and_a_local_table_still_works(tmp_path: Path) -> None:
    """`store.lance` defers the REST client package's `__init__` (12 MB, ~0.4 s): a local table
    is created, indexed and searched without the client's API modules, and reading a name from
    the package itself still runs its real `__init__`. In a fresh process: the suite imports lancedb."""
    code = (
        "import sys\n"
        "from mcp_memalpha.store.lance import lancedb\n"
        "db = lancedb().connect(sys.argv[1])\n"
        "table = db.create_table('t', [{'id': 'a', 'text': 'Biscuit takes thyroid pills'},"
        " {'id': 'b', 'text': 'Priya lives in Lisbon'}])\n"
        "table.create_fts_index('text')\n"
        "print(table.search('thyroid', query_type='fts').to_list()[0]['id'])\n"
        "print('lance_namespace_urllib3_client.api' in sys.modules)\n"
        "import lance_namespace_urllib3_client as client\n"
        "print(client.ApiClient.__name__, 'lance_namespace_urllib3_client.api' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "index")], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:3] == ["a", "False", "ApiClient True"]


@pytest.mark.anyio
async def test_a_window_opens_its_memory_at_the_first_call_and_a_ledger_broken_before_it_is_a_clear_error(
    tmp_path: Path,
) -> None:
    """A stdio window opens the memory at its first call, not at start: a ledger that broke in
    between is refused by that call with the store's reason, and the server goes on serving."""
    data = tmp_path / "data"
    with Memory(Settings(data_dir=data)) as memory:
        memory.insert(CallContext(), "semantic", "Ada keeps bees.")
    async with connect(stdio_params(data)) as client:
        assert [tool.name for tool in (await client.list_tools()).tools][:1] == ["new_memory_insert"]
        (data / "memory.db").write_bytes(b"")
        for path in data.glob("memory.db-*"):
            path.unlink()
        error = await call_error(client, "search_memory", query="bees")
        assert "memory.db is empty (0 bytes)" in error
        assert "memory.db is empty (0 bytes)" in await call_error(client, "core_memory_read")
        assert (await client.list_tools()).tools  # still serving
    assert (data / "memory.db").read_bytes() == b""  # refused, never rewritten
