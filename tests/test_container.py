"""The container image: built from the Dockerfile and served over HTTP with a token, where a
container runtime answers (`docker info`); its contract is checked from the file everywhere."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_memalpha.access import auth_file_entry, new_token
from tests.conftest import free_port

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_image_runs_as_a_user_with_a_data_volume_over_http() -> None:
    lines = [line.strip() for line in DOCKERFILE.splitlines() if line.strip() and not line.startswith("#")]
    assert "USER memalpha" in lines and "USER root" not in lines
    assert 'VOLUME ["/data"]' in lines and "MEMALPHA_DATA_DIR=/data" in DOCKERFILE
    assert lines[-2:] == ['ENTRYPOINT ["mcp-memalpha"]', 'CMD ["serve", "--transport", "http"]']
    assert "MEMALPHA_AUTH_FILE=/config/tokens.toml" in DOCKERFILE  # every address, so tokens


def test_the_image_checks_its_health_at_healthz_without_a_token() -> None:
    check = DOCKERFILE[DOCKERFILE.index("HEALTHCHECK") :].split("\n\n")[0]
    assert "/healthz" in check and "Authorization" not in check


def runtime() -> str:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no container runtime here (docker info fails); CI runs this where one exists")
    return docker


@pytest.mark.anyio
async def test_the_image_serves_a_client_with_a_token(tmp_path: Path) -> None:
    docker = runtime()
    subprocess.run([docker, "build", "-t", "mcp-memalpha:test", str(ROOT)], check=True, timeout=1800)
    token = new_token()
    (tmp_path / "tokens.toml").write_text(auth_file_entry("tester", token, ["default"]))
    port = free_port()
    name = f"memalpha-test-{port}"
    publish, tokens = f"127.0.0.1:{port}:8765", f"{tmp_path / 'tokens.toml'}:/config/tokens.toml:ro"
    run = [docker, "run", "-d", "--rm", "--name", name, "-p", publish, "-v", tokens, "mcp-memalpha:test"]
    subprocess.run(run, check=True, timeout=120)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        user = subprocess.run([docker, "exec", name, "id", "-u"], capture_output=True, text=True, check=True)
        assert user.stdout.strip() == "10001"
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
            Client(streamable_http_client(url, http_client=http), read_timeout_seconds=60) as client,
        ):
            inserted = await client.call_tool("new_memory_insert", {"memory_type": "semantic", "content": "In a box"})
            assert not inserted.is_error, inserted.content
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=60)
