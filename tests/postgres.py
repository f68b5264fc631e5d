"""A throwaway PostgreSQL 15 cluster for the tests: initdb in a temporary folder, a free loopback
port, stopped at the end of the session. PostgreSQL refuses to run as root, so as root the
cluster runs as `nobody`. Where PostgreSQL is not installed the tests that need it are skipped,
except in CI (CI=true), where that is a failure: `.ci/run` installs it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"), Path("/usr/lib/postgresql/17/bin"))
RUN_AS = "nobody"


def postgres_bin() -> Path | None:
    for candidate in BIN_DIRS:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found and shutil.which("initdb") else None


def missing(reason: str) -> None:
    """Skip outside CI; fail in CI, where a skip would hide that PostgreSQL never ran."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database for one test; dropped afterwards (with any connection left)."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *command] if os.geteuid() == 0 else command


@contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster (fsync off: the data is thrown away) and stop it at the end."""
    bindir = postgres_bin()
    if bindir is None:
        missing("PostgreSQL (initdb, pg_ctl) is not installed; on Debian: apt-get install postgresql-15")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed: pip install -e '.[postgres]'")
    assert bindir is not None
    folder = Path(tempfile.mkdtemp(prefix="memalpha-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, RUN_AS)
    data, log = folder / "data", folder / "server.log"
    port = _free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"]
    subprocess.run(_as_owner([*initdb, "-E", "UTF8", "--locale=C"]), check=True, capture_output=True)
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB"
    )
    pg_ctl = str(bindir / "pg_ctl")
    subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]), check=True)
    try:
        yield Cluster(port, folder)
    finally:
        subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), check=False)
        shutil.rmtree(folder, ignore_errors=True)


def listener(url: str, channel: str) -> int:
    """The backend pid of the connection that LISTENs on `channel` (idle, waiting), once there is one."""
    import time

    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        for _ in range(600):
            query = "SELECT pid FROM pg_stat_activity WHERE query = %s AND state = 'idle'"
            row = admin.execute(query, (f"LISTEN {channel}",)).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.05)
    raise AssertionError(f"nobody LISTENs on {channel}")
