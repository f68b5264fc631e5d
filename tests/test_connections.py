"""The HTTP server's connections under idle and slow peers: deadlines, caps, a log that cannot flood."""

from __future__ import annotations

import logging
import resource
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from mcp_memalpha.connections import FloodFilter, accept_backlog, connection_cap
from tests.conftest import command, free_port, server_env, wait_for_port
from tests.test_http_security import ACCEPT, ALICE, INITIALIZE, client_for, write_auth_file

PARTIAL_HEADERS = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic"


@contextmanager
def guarded_server(
    root: Path, env: dict[str, str], file_limit: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """A spawned HTTP server with the test tokens, its log in a file, under `file_limit` descriptors."""
    port, log_path = free_port(), root / "server.log"

    def limit_files() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    auth = write_auth_file(root / "tokens.toml")
    args = ["serve", "--transport", "http", "--port", str(port), "--data-dir", str(root / "data")]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command(), *args, "--auth-file", str(auth)],
            env=server_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            preexec_fn=limit_files,
        )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp", process, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def idle_connection(
    url: str, stack: ExitStack, payload: bytes = PARTIAL_HEADERS, source: str = "127.0.0.1"
) -> socket.socket:
    """A connection from `source` (any loopback address) that sends `payload` and then nothing."""
    port = int(url.split(":")[2].split("/")[0])
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)))
    if payload:
        sock.sendall(payload)
    return sock


def closed_by_server(sock: socket.socket, within: float = 30.0) -> bool:
    """Whether the server closes `sock` (reads EOF, possibly after an error response)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def initialize(url: str) -> httpx.Response:
    return httpx.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {ALICE}"}, timeout=30)


def test_a_partial_request_line_headers_or_body_is_closed_after_its_deadline(tmp_path: Path) -> None:
    timeouts = {"MEMALPHA_HTTP_HEADER_TIMEOUT_SECONDS": "1", "MEMALPHA_HTTP_BODY_TIMEOUT_SECONDS": "1"}
    with guarded_server(tmp_path, timeouts) as (url, _process, _log), ExitStack() as stack:
        nothing = idle_connection(url, stack, b"")
        request_line = idle_connection(url, stack, b"POST /mc")
        headers = idle_connection(url, stack)
        body = idle_connection(
            url,
            stack,
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {ALICE}\r\nAccept: {ACCEPT['Accept']}\r\nContent-Length: 500\r\n\r\n".encode()
            + b'{"jsonrpc": "2.0", ',
        )
        assert all(closed_by_server(sock) for sock in (nothing, request_line, headers, body))
        assert initialize(url).status_code == 200  # a client that sends its request is served


def test_a_connection_over_the_cap_closes_the_longest_waiting_one(tmp_path: Path) -> None:
    caps = {"MEMALPHA_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "5", "MEMALPHA_HTTP_HEADER_TIMEOUT_SECONDS": "600"}
    with guarded_server(tmp_path, caps) as (url, _process, _log), ExitStack() as stack:
        idle = [idle_connection(url, stack) for _ in range(5)]
        assert initialize(url).status_code == 200
        assert closed_by_server(idle[0])  # the oldest made room
        assert not closed_by_server(idle[-1], within=0.5)  # the others still wait


@pytest.mark.anyio
async def test_more_idle_connections_than_the_file_limit_leave_clients_served(tmp_path: Path) -> None:
    """The review's attack: without a token, sockets that send part of a request and nothing more."""
    with (
        guarded_server(tmp_path, {"MEMALPHA_HTTP_HEADER_TIMEOUT_SECONDS": "600"}, file_limit=1024) as (
            url,
            _process,
            log,
        ),
        ExitStack() as stack,
    ):
        async with client_for(url, ALICE) as alice:  # a session opened before the attack
            await alice.call_tool("new_memory_insert", {"memory_type": "semantic", "content": "Alice keeps bees"})
            for number in range(1100):  # more than the file limit, from 22 addresses: under the per-address cap
                payload = PARTIAL_HEADERS if number % 2 else b""
                idle_connection(url, stack, payload, source=f"127.0.0.{2 + number % 22}")
            assert initialize(url).status_code == 200
            found = await alice.call_tool("search_memory", {"query": "bees"})
            assert not found.is_error and "Alice keeps bees" in str(found.structured_content)
        assert log.stat().st_size < 1_000_000


def test_the_connection_cap_leaves_room_under_the_file_limit() -> None:
    assert connection_cap(1000, file_limit=1024) == 768
    assert connection_cap(1000, file_limit=128) == 64
    assert connection_cap(100, file_limit=65536) == 100
    assert connection_cap(1000, file_limit=resource.RLIM_INFINITY) == 1000
    # what one accept round may take before the guard sees it stays inside the reserve
    assert accept_backlog(1024) == 64 and accept_backlog(128) == 16 and accept_backlog(65536) == 2048
    assert accept_backlog(resource.RLIM_INFINITY) == 2048


def test_the_flood_filter_logs_each_shape_a_few_times_a_window_then_counts() -> None:
    now = [0.0]
    flood = FloodFilter(burst=3, window=60.0, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    assert [flood.filter(record("socket.accept() out of system resource\nsocket: 3")) for _ in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert flood.filter(record("another message"))
    now[0] = 61.0
    summary = record("socket.accept() out of system resource")
    assert flood.filter(summary) and "[2 more like this in the last 61 s not logged]" in summary.getMessage()
