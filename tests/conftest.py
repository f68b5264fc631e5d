"""Shared fixtures: real data directories, real spawned servers (stdio and HTTP), real clients."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.cli import launch_command
from tests import postgres

# The ledger backends. A test module runs on both with `pytestmark = BOTH_BACKENDS`; its
# `settings`, `memory` and `database` fixtures then point at SQLite, then at a fresh PostgreSQL
# database of the session's throwaway cluster (`tests/postgres.py`).
BACKENDS = ("sqlite", "postgres")
BOTH_BACKENDS = pytest.mark.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The ledger backend of this test: SQLite unless the module opts in to BOTH_BACKENDS."""
    return str(request.param)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as running:
        yield running


def _ledger_settings(backend: str, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if backend == "sqlite":
        yield {}
        return
    cluster: postgres.Cluster = request.getfixturevalue("postgres_cluster")
    with cluster.database() as url:
        yield {"database_url": url}


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings naming this test's ledger: {} for SQLite (memory.db in the data directory), else
    {"database_url": ...} of a fresh PostgreSQL database. `env(database)` gives them as variables."""
    yield from _ledger_settings(backend, request)


@pytest.fixture
def other_database(backend: str, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A second ledger like `database` (a test moving memories from one to another)."""
    yield from _ledger_settings(backend, request)


def env(database: dict[str, str]) -> dict[str, str]:
    """`database` as MEMALPHA_* variables, for a spawned server or command."""
    return {f"MEMALPHA_{key.upper()}": value for key, value in database.items()}


@pytest.fixture
def settings(tmp_path: Path, database: dict[str, str]) -> Settings:
    return Settings(data_dir=tmp_path / "data", **database)


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    with Memory(settings) as opened:
        yield opened


@pytest.fixture
def ctx() -> CallContext:
    return CallContext()


def command() -> list[str]:
    """The installed console script, as a client would launch it."""
    return launch_command()


def server_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEMALPHA_")}
    env.update(extra)
    return env


def stdio_params(data_dir: Path, *args: str, **env: str) -> StdioServerParameters:
    cmd = command()
    return StdioServerParameters(
        command=cmd[0], args=[*cmd[1:], "serve", "--data-dir", str(data_dir), *args], env=server_env(**env)
    )


def policy_params(data_dir: Path, policy: str = "default", *args: str, **env: str) -> StdioServerParameters:
    """A spawned `mcp-memalpha serve --policy <policy>` over stdio (for HTTP: `http_server(data_dir,
    "--policy", policy)`). Tune it with MEMALPHA_POLICY_* in `env`, e.g. a short lease."""
    return stdio_params(data_dir, "--policy", policy, *args, **env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {port} within {timeout} s")


@contextmanager
def http_server(data_dir: Path, *args: str, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A spawned `mcp-memalpha serve --transport http`; yields its URL and process. `env` adds
    MEMALPHA_* settings."""
    port = free_port()
    process = subprocess.Popen(
        [*command(), "serve", "--transport", "http", "--port", str(port), "--data-dir", str(data_dir), *args],
        env=server_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


@asynccontextmanager
async def connect(target: StdioServerParameters | str, **kwargs: Any) -> AsyncIterator[Client]:
    async with Client(target, read_timeout_seconds=60, **kwargs) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; return its error text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed but returned {result.structured_content}"
    return result.content[0].text  # type: ignore[union-attr]


def shared_data_missing(path: Path) -> bool:
    """Whether a test needing `../shared` data is skipped: only outside CI (in CI it runs, and fails
    on the missing file, since a skip there would hide that the data never reached the run)."""
    return not path.exists() and not os.environ.get("CI")
