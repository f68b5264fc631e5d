"""What the memory writes is private to its user: folders 0700, files 0600, whatever the umask;
a data directory or auth file that others can read is named in a warning at start-up."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import call, command, connect, http_server, server_env, stdio_params


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The default of most systems, which made the data directory 0755 and memory.db 0644."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def exposed(root: Path) -> dict[str, str]:
    """Everything under `root` (and itself) that its group or others may read, write or enter."""
    paths = [root, *root.rglob("*")]
    return {
        str(p.relative_to(root.parent)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths if p.stat().st_mode & 0o077
    }


@pytest.mark.anyio
async def test_a_served_memory_is_private_to_its_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with connect(stdio_params(data)) as client:
        await call(client, "new_memory_insert", memory_type="semantic", content="The user's PIN is not written here")
        await call(client, "search_memory", query="PIN")  # the index is built
        names = {p.name for p in data.iterdir()}
        assert {"memory.db", "memory.db-wal", "memory.db-shm", "index"} <= names
        assert exposed(data) == {}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "memory.db").stat().st_mode) == 0o600


def test_exports_and_imports_are_private(tmp_path: Path) -> None:
    data, copy, out = tmp_path / "data", tmp_path / "copy", tmp_path / "memory.jsonl"
    importing = [*command(), "import", "--data-dir"]
    source = tmp_path / "source.jsonl"
    source.write_text(
        '{"record": "header", "format": "mcp-memalpha", "format_version": 1, "exported_at": "2023-05-08T13:56:00Z"}\n'
        '{"record": "item", "id": "s-7kq2mx", "namespace": "default", "memory_type": "semantic", "content": '
        '"Lee is a pianist", "event_time": null, "created_at": "2023-05-08T13:56:00Z", "updated_at": '
        '"2023-05-08T13:56:00Z", "version": 1, "source": "client"}\n'
    )
    run = {"capture_output": True, "text": True, "env": server_env(), "timeout": 120}
    assert subprocess.run([*importing, str(data), str(source)], **run).returncode == 0  # type: ignore[call-overload]
    exported = subprocess.run([*command(), "export", "--data-dir", str(data), "-o", str(out)], **run)  # type: ignore[call-overload]
    assert exported.returncode == 0, exported.stderr
    assert subprocess.run([*importing, str(copy), str(out)], **run).returncode == 0  # type: ignore[call-overload]
    assert exposed(data) == {} and exposed(copy) == {}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_an_exposed_data_directory_and_auth_file_are_warned_about(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    auth = tmp_path / "tokens.toml"
    auth.write_text('[[tokens]]\nname = "laptop"\nsha256 = "' + "0" * 64 + '"\nnamespaces = ["default"]\n')
    auth.chmod(0o644)
    with http_server(data, "--auth-file", str(auth)) as (_url, process):
        process.terminate()
        _out, err = process.communicate(timeout=30)
    warnings = err.decode()
    assert (
        f"data directory {data} is readable by its group, readable by others (mode 755); make it private: chmod 700"
        in warnings
    )
    assert f"auth file {auth} is readable by its group, readable by others (mode 644)" in warnings
    assert "memory database" not in warnings  # created 0600 by this server
