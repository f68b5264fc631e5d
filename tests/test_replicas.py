"""Serving beyond one process, over real HTTP: `/healthz` for load balancers, and stateless replicas
(`serve --stateless`) on one data directory answering one client's requests in turn."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.server import ServerState
from mcp_memalpha.server import health as health_of
from tests import postgres
from tests.conftest import call, connect, http_server
from tests.test_http_security import ALICE, write_auth_file

pytestmark = pytest.mark.anyio


def health(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx2.get(url.removesuffix("/mcp") + "/healthz", timeout=30)
    return response.status_code, response.json()


def write_elsewhere(data: Path, content: str) -> None:
    """A write by another process on the data (a replica, a worker): this server is not told of it."""
    with Memory(Settings(data_dir=data)) as memory:
        memory.insert(CallContext(), "semantic", content)


def health_after_a_write_elsewhere(url: str, data: Path) -> tuple[int, dict[str, Any]]:
    """`/healthz` once another process has written what this server has not applied. The sync
    that the server's first call and its own writes woke may still be running and catch a write
    up; each wake runs one pass, so within three writes one is left behind (lag 1)."""
    for attempt in range(3):
        write_elsewhere(data, f"Ada moved to Lyon ({attempt}).")
        status, body = health(url)
        if body["index"]["lag"]:
            break
    return status, body


async def test_healthz_reports_the_ledger_and_the_index_lag(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data) as (url, _):
        async with connect(url) as client:
            await call(client, "new_memory_insert", memory_type="semantic", content="Ada keeps bees.")
            await call(client, "search_memory", query="bees")  # the index has caught up
            status, body = health(url)
            assert status == 200 and body["status"] == "ok", body
            assert body["ledger"] == {"reachable": True, "head_seq": 1}
            assert body["index"] == {"built": True, "applied_seq": 1, "lag": 0}
            status, body = health_after_a_write_elsewhere(url, data)
            assert status == 200 and body["index"]["lag"] == 1  # reported, not a failure by default
            await call(client, "search_memory", query="Lyon")
            assert health(url)[1]["index"]["lag"] == 0


async def test_healthz_fails_a_replica_whose_index_lags_past_the_limit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data, "--health-max-index-lag", "0") as (url, _):
        async with connect(url) as client:
            await call(client, "search_memory", query="anything")
            assert health(url)[0] == 200
            status, body = health_after_a_write_elsewhere(url, data)
            assert status == 503 and body["status"] == "lagging", body
            assert "1 operations behind" in body["index"]["error"]
            await call(client, "search_memory", query="Lyon")
            assert health(url)[0] == 200


async def test_an_index_that_polls_the_ledger_follows_other_processes_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with http_server(data, "--index-poll-seconds", "0.2", "--health-max-index-lag", "0") as (url, _):
        async with connect(url) as client:
            await call(client, "search_memory", query="anything")
        write_elsewhere(data, "Ada moved to Lyon.")
        for _ in range(600):  # caught up by the indexer's poll alone: nothing is searched here
            status, body = health(url)
            if body["index"]["lag"] == 0:
                break
        assert status == 200 and body["index"]["applied_seq"] == 1, body


async def test_healthz_is_unavailable_while_the_memory_is_not_open(tmp_path: Path) -> None:
    """Before the lifespan opened the memory (or after it closed it) the server cannot serve."""
    status, body = health_of(ServerState(Settings(data_dir=tmp_path / "data")))
    assert status == 503 and body["status"] == "unavailable"
    assert body["ledger"] == {
        "reachable": False,
        "error": "the memory store is not open (the server is starting or stopping)",
    }


def test_healthz_needs_no_token_where_every_other_request_does(tmp_path: Path) -> None:
    tokens = write_auth_file(tmp_path / "tokens.toml")
    with http_server(tmp_path / "data", "--auth-file", str(tokens)) as (url, _):
        status, body = health(url)
        assert status == 200 and body["ledger"]["reachable"] is True
        assert body["index"]["built"] in (True, False)
        refused = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=30)
        assert refused.status_code == 401


class Alternating(httpx2.AsyncBaseTransport):
    """A load balancer in the client: tool calls go to each of `ports` in turn (the first to the
    first), and so, on a count of their own, do all other requests (initialize, notifications)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.inner = httpx2.AsyncHTTPTransport()
        self.turns = {"call": 0, "other": 0}
        self.sent: list[tuple[int, str]] = []  # (port, tool name or JSON-RPC method or HTTP method)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(await request.aread() or b"{}") if request.method == "POST" else {}
        tool = body.get("params", {}).get("name") if body.get("method") == "tools/call" else None
        kind = "call" if tool else "other"
        port = self.ports[self.turns[kind] % len(self.ports)]
        self.turns[kind] += 1
        request.url = request.url.copy_with(port=port)
        self.sent.append((port, tool or body.get("method") or request.method))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_two_stateless_replicas_on_one_data_answer_one_client_in_turn(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tokens = write_auth_file(tmp_path / "tokens.toml")
    replica = ("--stateless", "--auth-file", str(tokens))
    with http_server(data, *replica) as (first, _), http_server(data, *replica) as (second, _):
        ports = [httpx2.URL(first).port, httpx2.URL(second).port]
        balancer = Alternating([p for p in ports if p is not None])
        headers = {"Authorization": f"Bearer {ALICE}"}
        async with (
            httpx2.AsyncClient(transport=balancer, headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
            Client(streamable_http_client(first, http_client=http), read_timeout_seconds=60) as client,
        ):
            inserted = await call(
                client, "new_memory_insert", memory_type="semantic", content="Ada keeps bees in Lyon."
            )
            found = await call(client, "search_memory", query="Where are Ada's bees?")
            got = await call(client, "memory_get", memory_ids=[inserted["memory_id"]])
        calls = [(port, name) for port, name in balancer.sent if name.startswith(("new_memory_", "memory_", "search_"))]
        assert calls == [(ports[0], "new_memory_insert"), (ports[1], "search_memory"), (ports[0], "memory_get")]
        assert [hit["memory_id"] for hit in found["results"]][:1] == [inserted["memory_id"]]
        assert got["memories"][0]["content"] == "Ada keeps bees in Lyon."
        assert {port for port, _ in balancer.sent} == set(ports)
        # without a token, a stateless replica refuses as a stateful one does: every request is checked
        assert httpx2.post(second, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=30).status_code == 401


async def test_a_replica_on_postgres_follows_another_replicas_write_by_notification(
    tmp_path: Path, postgres_cluster: postgres.Cluster
) -> None:
    """Two replicas on one PostgreSQL ledger, without --index-poll-seconds: a write through the
    first NOTIFYs, and the second, which is sent no call at all, builds and catches its index up
    (its /healthz lag goes to 0). On SQLite, or before the LISTEN, nothing would wake it."""
    with postgres_cluster.database() as url:
        replica = ("--database-url", url, "--stateless")
        with (
            http_server(tmp_path / "one", *replica) as (first, _),
            http_server(tmp_path / "two", *replica) as (
                second,
                _,
            ),
        ):
            assert health(second)[1]["index"]["built"] is False  # idle: nothing has woken it yet
            async with connect(first) as client:
                inserted = await call(client, "new_memory_insert", memory_type="semantic", content="Ada keeps bees.")
            for _ in range(1200):  # a bounded wait for a state: no call goes to the second replica
                status, body = health(second)
                if body["index"]["lag"] == 0:
                    break
                time.sleep(0.05)
            assert status == 200 and body["index"] == {"built": True, "applied_seq": 1, "lag": 0}, body
            async with connect(second) as client:
                found = await call(client, "search_memory", query="bees")
            assert [hit["memory_id"] for hit in found["results"]] == [inserted["memory_id"]]
