"""The HTTP transport's refusals and isolation, against real spawned servers and real clients."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_memalpha.access import AuthFileError, auth_file_entry, load_access_list, new_token
from mcp_memalpha.http_security import (
    NAMESPACE_HEADER,
    SESSION_IDLE_SECONDS,
    SessionCount,
    TokenBucket,
    origin_allowed,
)
from tests.conftest import call, command, http_server, server_env

ALICE = "alice-token-" + "a" * 24  # namespaces alice (default) and shared, given in plain
BOB = new_token()  # namespace bob, given by its SHA-256
SLOW = "slow-token-" + "s" * 24  # one request a minute

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def write_auth_file(path: Path) -> Path:
    path.write_text(
        f'[[tokens]]\nname = "alice"\ntoken = "{ALICE}"\nnamespaces = ["alice", "shared"]\n\n'
        + auth_file_entry("bob", BOB, ["bob"])
        + f'\n[[tokens]]\nname = "slow"\ntoken = "{SLOW}"\nnamespaces = ["slow"]\nrate_limit_per_minute = 1\n'
    )
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server with the three tokens, bound to every address (allowed: it has tokens)."""
    root = tmp_path_factory.mktemp("secured")
    auth_file = write_auth_file(root / "tokens.toml")
    with http_server(root / "data", "--host", "0.0.0.0", "--auth-file", str(auth_file)) as (url, _process):
        yield url


def post(url: str, token: str | None = None, body: Any = INITIALIZE, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json=body, headers={**ACCEPT, **headers}, timeout=60)


def error_message(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    return str(response.json()["error"]["message"])


@asynccontextmanager
async def client_for(url: str, token: str, namespace: str | None = None) -> AsyncIterator[Client]:
    """An MCP client sending the token (and a namespace) with every request."""
    headers = {"Authorization": f"Bearer {token}"} | ({NAMESPACE_HEADER: namespace} if namespace else {})
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        Client(streamable_http_client(url, http_client=http), read_timeout_seconds=60) as client,
    ):
        yield client


def test_a_request_without_a_token_is_refused_with_a_bearer_challenge(secured: str) -> None:
    response = post(secured)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer <token>" in error_message(response)


def test_an_unknown_token_is_refused(secured: str) -> None:
    for header in (f"Bearer {ALICE}x", "Basic YWxpY2U6cHc=", "Bearer"):
        response = post(secured, Authorization=header)
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert error_message(response).startswith("Authorization:")
    assert 'error="invalid_token"' in post(secured, "not-a-token").headers["www-authenticate"]


def test_a_namespace_not_granted_is_refused(secured: str) -> None:
    response = post(secured, ALICE, **{NAMESPACE_HEADER: "bob"})
    assert response.status_code == 403
    message = error_message(response)
    assert NAMESPACE_HEADER in message and "'bob'" in message and "'alice'" in message


def test_only_allowed_origins_may_call(secured: str) -> None:
    response = post(secured, ALICE, Origin="https://evil.example")
    assert response.status_code == 403
    assert "allowed_origins" in error_message(response)
    assert post(secured, ALICE, Origin="http://localhost:5173").status_code == 200
    assert post(secured, ALICE).status_code == 200  # no Origin: not a browser


def test_an_oversized_body_is_refused_before_it_is_read(secured: str) -> None:
    big = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": "x" * 2_000_000}}  # type: ignore[dict-item]
    response = post(secured, ALICE, big)
    assert response.status_code == 413
    assert "max_request_bytes" in error_message(response)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
        yield from (b" " * 65536 for _ in range(32))

    headers = {**ACCEPT, "Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"}
    streamed = httpx.post(secured, content=chunks(), headers=headers, timeout=60)
    assert streamed.status_code == 413
    assert "max_request_bytes" in error_message(streamed)  # a JSON-RPC error body, as the README says


def test_a_body_that_is_not_json_is_refused_with_a_json_rpc_error(secured: str) -> None:
    headers = {**ACCEPT, "Authorization": f"Bearer {ALICE}", "Content-Type": "text/plain"}
    response = httpx.post(secured, content=json.dumps(INITIALIZE), headers=headers, timeout=60)
    assert response.status_code == 415
    assert "Content-Type: must be application/json" in error_message(response) and "'text/plain'" in error_message(
        response
    )


def test_over_the_rate_limit_a_token_is_told_when_to_retry(secured: str) -> None:
    assert post(secured, SLOW).status_code == 200
    refused = post(secured, SLOW)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "'slow'" in error_message(refused) and "1 requests a minute" in error_message(refused)
    assert post(secured, ALICE).status_code == 200  # the bucket is the token's own


@pytest.mark.anyio
async def test_tokens_only_see_their_own_namespaces(secured: str) -> None:
    async with client_for(secured, ALICE) as alice, client_for(secured, BOB) as bob:
        secret = await call(alice, "new_memory_insert", memory_type="semantic", content="Alice's locker code is 4711")
        await call(alice, "memory_update", memory_type="core", new_content="Alice is a locksmith.")
        await call(bob, "new_memory_insert", memory_type="semantic", content="Bob's locker code is 1234")

        assert (await call(bob, "search_memory", query="locker code"))["results"][0]["text"].startswith("Bob")
        assert (await call(bob, "memory_get", memory_ids=[secret["memory_id"]]))["missing"] == [secret["memory_id"]]
        assert (await call(bob, "memory_list", memory_type="semantic"))["total"] == 1
        assert (await call(bob, "core_memory_read"))["content"] == ""
        core = await bob.read_resource("memory://core")
        assert core.contents[0].text == ""  # type: ignore[union-attr]
        prompt = await bob.get_prompt("memory_context", {"topic": "locker"})
        assert "Alice" not in prompt.messages[0].content.text  # type: ignore[union-attr]

        assert [hit["text"] for hit in (await call(alice, "search_memory", query="locker code"))["results"]] == [
            "Alice's locker code is 4711"
        ]
        assert (await bob.read_resource("memory://core")).contents[0].text == ""  # type: ignore[union-attr]
        assert (await alice.read_resource("memory://core")).contents[0].text == "Alice is a locksmith."  # type: ignore[union-attr]

    async with client_for(secured, ALICE, "shared") as shared:  # a second namespace of the same token
        assert (await call(shared, "memory_list", memory_type="semantic"))["total"] == 0


def test_a_session_follows_each_requests_namespace_and_stays_with_its_token(secured: str) -> None:
    """Raw streamable HTTP (the handshake era): one session, two namespaces, and another token locked out."""
    with httpx.Client(headers=ACCEPT, timeout=60) as http:
        opened = http.post(secured, json=INITIALIZE, headers={"Authorization": f"Bearer {ALICE}"})
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}

        def send(token: str, body: dict[str, Any], **headers: str) -> httpx.Response:
            return http.post(secured, json=body, headers={**session, "Authorization": f"Bearer {token}", **headers})

        assert send(ALICE, {"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
        insert = {"name": "new_memory_insert", "arguments": {"memory_type": "semantic", "content": "Shared plans"}}
        inserted = send(
            ALICE, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": insert}, **{NAMESPACE_HEADER: "shared"}
        )
        assert inserted.status_code == 200 and "Shared plans" in inserted.text
        listing = {"name": "memory_list", "arguments": {"memory_type": "semantic"}}
        in_alice = send(ALICE, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": listing})
        assert "Shared plans" not in in_alice.text
        in_shared = send(
            ALICE,
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": listing},
            **{NAMESPACE_HEADER: "shared"},
        )
        assert "Shared plans" in in_shared.text

        hijack = send(BOB, {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": listing})
        assert hijack.status_code == 404  # the SDK answers as if the session did not exist


def test_without_tokens_only_the_process_namespace_is_served(tmp_path: Path) -> None:
    with http_server(tmp_path / "data", "--namespace", "home") as (url, _process):
        assert post(url, **{NAMESPACE_HEADER: "home"}).status_code == 200
        refused = post(url, **{NAMESPACE_HEADER: "work"})
        assert refused.status_code == 403 and "no auth file" in error_message(refused)
        assert post(url, Origin="https://evil.example").status_code == 403
        # the SDK's DNS-rebinding check: a page on a name rebound to 127.0.0.1
        assert post(url, Host="evil.example:80").status_code == 421


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "serve", "--transport", "http", *args],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=120,
    )


def test_a_non_loopback_address_without_tokens_is_refused_at_startup(tmp_path: Path) -> None:
    result = run_serve("--host", "0.0.0.0", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "--host" in result.stderr and "loopback" in result.stderr
    assert "--auth-file" in result.stderr and "mcp-memalpha token new" in result.stderr


def test_a_bad_auth_file_is_refused_at_startup_naming_the_entry_and_field(tmp_path: Path) -> None:
    auth_file = tmp_path / "tokens.json"
    auth_file.write_text('{"tokens": [{"name": "ci", "sha256": "abc", "namespaces": ["ci"]}]}')
    result = run_serve("--auth-file", str(auth_file), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "--auth-file" in result.stderr and "tokens[0] ('ci'): sha256: must be the 64 hexadecimal" in result.stderr


DIGEST = "0" * 64


def entry(**fields: Any) -> dict[str, Any]:
    return {"name": "a", "sha256": DIGEST, "namespaces": ["a"], **fields}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"tokens": []}, "tokens: lists no token"),
        ({"tokens": [{"name": "a", "namespaces": ["a"]}]}, "tokens[0] ('a'): entry: give exactly one of"),
        ({"tokens": [entry(sha256=None, token="short")]}, "tokens[0] ('a'): token: must be at least 24"),
        ({"tokens": [entry(namespaces=[])]}, "tokens[0] ('a'): namespaces: List should have at least 1 item"),
        ({"tokens": [entry(namespaces=["a b"])]}, "namespaces: 'a b' is not a valid namespace"),
        ({"tokens": [entry(colour="red")]}, "tokens[0] ('a'): colour: is not a known field"),
        ({"tokens": [entry(), entry(sha256="1" * 64)]}, "tokens[1] ('a'): name: another entry is already named"),
        ({"tokens": [entry(), entry(name="b")]}, "tokens[1] ('b'): the same token as entry 'a'"),
        ("{nope", "not valid JSON"),
    ],
)
def test_auth_file_errors_name_the_entry_and_field(tmp_path: Path, content: Any, expected: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(AuthFileError) as raised:
        load_access_list(path)
    assert str(raised.value).startswith(f"{path}: ") and expected in str(raised.value)


def test_tokens_are_recognized_by_their_digest_or_in_plain(tmp_path: Path) -> None:
    access = load_access_list(write_auth_file(tmp_path / "tokens.toml"))
    assert access.authenticate(BOB) is not None and access.authenticate(BOB).namespaces == ("bob",)  # type: ignore[union-attr]
    assert access.authenticate(ALICE).name == "alice"  # type: ignore[union-attr]
    assert access.authenticate(ALICE[:-1]) is None and access.authenticate("") is None
    assert BOB not in (tmp_path / "tokens.toml").read_text()  # only its SHA-256 is kept


def test_token_bucket_allows_its_rate_in_bursts_and_says_when_to_retry() -> None:
    bucket = TokenBucket(per_minute=60, now=0.0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(60))  # a full minute's burst
    assert bucket.take(0.0) == pytest.approx(1.0)  # one a second after that
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0
    assert bucket.take(1000.0) == 0.0  # refills up to its capacity, no further
    assert sum(bucket.take(1000.0) == 0.0 for _ in range(100)) == 59


def test_a_token_bucket_says_when_without_spending() -> None:
    bucket = TokenBucket(per_minute=60, now=0.0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(60))
    assert bucket.wait(0.5) == pytest.approx(0.5) and bucket.wait(0.5) == pytest.approx(0.5)
    assert bucket.wait(1.0) == 0.0 and not bucket.full(1.0) and bucket.full(60.0)


def test_sessions_count_until_ended_or_idle() -> None:
    count = SessionCount()
    for session_id in ("s1", "s2"):
        count.used("alice", session_id, 0.0)
    count.used("bob", "s3", 0.0)
    assert count.open("alice", 1.0) == 2 and count.open("bob", 1.0) == 1
    count.ended("alice", "s1")
    assert count.open("alice", 1.0) == 1
    count.used("alice", "s2", 100.0)  # used again: idle from then on
    assert count.open("alice", 99.0 + SESSION_IDLE_SECONDS) == 1
    assert count.open("alice", 100.0 + SESSION_IDLE_SECONDS) == 0


def test_origin_patterns() -> None:
    allowed = ["http://localhost:*", "https://app.example.com"]
    assert origin_allowed("http://localhost:3000", allowed) and origin_allowed("http://localhost", allowed)
    assert origin_allowed("https://app.example.com", allowed)
    assert not origin_allowed("https://app.example.com:8443", allowed)
    assert not origin_allowed("http://localhost.evil.example", allowed)
    assert not origin_allowed("http://localhost:3000.evil.example", allowed)
    assert not origin_allowed("null", allowed)


def test_token_new_prints_a_token_and_its_entry() -> None:
    result = subprocess.run(
        [*command(), "token", "new", "--name", "laptop", "--namespace", "alice", "--namespace", "shared"],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    token = next(line for line in lines if line.startswith("mema_"))
    entry = result.stdout[result.stdout.index("[[tokens]]") :]
    assert token not in entry and 'namespaces = ["alice", "shared"]' in entry


@pytest.mark.anyio
async def test_mcp_clients_see_the_refusal_message(secured: str) -> None:
    with pytest.raises(BaseException) as raised:  # the SDK raises it inside task-group exception groups
        async with client_for(secured, "not-a-token"):
            pass
    assert "Authorization: unknown token" in _leaves(raised.value)


def _leaves(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return " | ".join(_leaves(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}" if isinstance(error, MCPError) else str(error)
