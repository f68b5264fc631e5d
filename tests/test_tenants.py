"""One token cannot take what other tokens need: worker threads, long waits, sessions, guesses.

The server runs in this process (uvicorn on a thread, the real HTTP stack and MCP clients) so
the curator can be held: its jobs stay queued and `memorize_status` waits as long as it is asked.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from mcp_memalpha.access import load_access_list
from mcp_memalpha.connections import uvicorn_config
from mcp_memalpha.http_security import secure_app
from mcp_memalpha.server import build_server
from mcp_memalpha.settings import Settings
from tests.conftest import call, free_port
from tests.test_curation import SCRIPT, ScriptedCurator
from tests.test_http_security import ACCEPT, ALICE, BOB, INITIALIZE, client_for, error_message, write_auth_file


@contextmanager
def held_curator_server(root: Path, **settings: Any) -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server with the test tokens (and `settings`) whose curator loads once the event is set."""
    release = threading.Event()

    def load_curator() -> ScriptedCurator:
        release.wait(120)
        return ScriptedCurator(SCRIPT)

    auth_file = write_auth_file(root / "tokens.toml")
    config = Settings(data_dir=root / "data", policy="default", auth_file=auth_file, **settings)
    app = secure_app(build_server(config, load_curator=load_curator), config, load_access_list(auth_file), "127.0.0.1")
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, config, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp", release
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)


@pytest.mark.anyio
async def test_one_tokens_long_waits_leave_another_tokens_calls_served(tmp_path: Path) -> None:
    """The review's attack: 40 `memorize_status(wait_seconds=...)` from one token took every worker
    thread, and another tenant's core_memory_read waited until one of them returned."""
    with held_curator_server(tmp_path) as (url, release):
        async with client_for(url, ALICE) as alice, client_for(url, BOB) as bob:
            job = await call(alice, "memorize", chunk="User: I opened my restaurant.")
            started = anyio.Event()
            waits: list[str] = []  # how each wait ended: "returned" or its refusal

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                # sent once a wait runs on the server
                waits.append("running")
                if len(waits) == 40:
                    started.set()

            async def wait_for_job() -> None:
                result = await alice.call_tool(
                    "memorize_status", {"job_id": job["job_id"], "wait_seconds": 60}, progress_callback=on_progress
                )
                waits.append(result.content[0].text if result.is_error else "returned")  # type: ignore[union-attr]
                if len(waits) == 40:
                    started.set()

            async with anyio.create_task_group() as group:
                for _ in range(40):
                    group.start_soon(wait_for_job)
                with anyio.fail_after(60):
                    await started.wait()  # every wait is running or refused
                read = await call(bob, "core_memory_read")
                assert read["content"] == "" and "returned" not in waits  # served while every wait still waits
                release.set()  # the job runs; the waits return
        refused = [outcome for outcome in waits if outcome not in ("running", "returned")]
        assert waits.count("returned") == 4 and len(refused) == 36
        assert "wait_seconds: 'alice' already has 4 calls waiting (max_waits_per_token)" in refused[0]


def open_session(url: str, token: str) -> httpx.Response:
    return httpx.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {token}"}, timeout=30)


def test_one_token_cannot_open_more_than_its_sessions(tmp_path: Path) -> None:
    """The SDK's limit (10,000 sessions) is for everyone together: one token could use it all up."""
    with held_curator_server(tmp_path, max_sessions_per_token=3) as (url, _release):
        opened = [open_session(url, ALICE) for _ in range(3)]
        assert all(response.status_code == 200 for response in opened)
        refused = open_session(url, ALICE)
        assert refused.status_code == 429
        assert "token 'alice' has 3 sessions open (max_sessions_per_token)" in error_message(refused)
        assert open_session(url, BOB).status_code == 200  # the limit is the token's own

        session = {"mcp-session-id": opened[0].headers["mcp-session-id"], "Authorization": f"Bearer {ALICE}"}
        assert httpx.delete(url, headers={**session, "mcp-protocol-version": "2025-06-18"}).status_code < 400
        assert open_session(url, ALICE).status_code == 200  # the ended session no longer counts


def test_failed_authentications_are_rate_limited_per_address(tmp_path: Path) -> None:
    with held_curator_server(tmp_path, auth_failures_per_minute=3) as (url, _release):
        assert [open_session(url, "guess-" + "x" * 30).status_code for _ in range(3)] == [401, 401, 401]
        refused = open_session(url, "guess-" + "y" * 30)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "failed authentications a minute from 127.0.0.1" in error_message(refused)
        assert open_session(url, ALICE).status_code == 429  # no token is looked at from there for now


def test_dos_benchmark_smoke() -> None:
    """A reduced run of benchmarks/dos.py, so it stays runnable (figures come from full runs)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "dos.py"
    result = subprocess.run(
        [sys.executable, str(script), "--idle", "40", "--waits", "6", "--wait-seconds", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for title in ("Idle connections", "Long waits", "Sessions", "Failed authentication"):
        assert f"### {title}" in result.stdout
    assert "| valid requests answered 200 | 20 of 20 |" in result.stdout
    assert "| waits admitted / refused at once | 4 / 2 |" in result.stdout
