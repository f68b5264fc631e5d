"""Lines a stdio client sends that the SDK cannot read get a JSON-RPC error reply, not silence."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcp_memalpha.server import unreadable_reply
from tests.conftest import command, server_env

DEEP = "[" * 100_000 + "]" * 100_000
PING = b'{"jsonrpc": "2.0", "id": "last", "method": "ping"}\n'


def exchange(data_dir: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    """Send `lines` to a spawned stdio server, then a ping; the replies up to the ping's."""
    process = subprocess.Popen(
        [*command(), "serve", "--data-dir", str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(),
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"".join(line + b"\n" for line in lines) + PING)
        process.stdin.flush()
        replies: list[dict[str, Any]] = []
        while not replies or replies[-1].get("id") != "last":  # each line is answered in turn
            replies.append(json.loads(process.stdout.readline()))
        return replies
    finally:
        process.kill()
        process.wait()


def test_unreadable_lines_are_answered_with_json_rpc_errors(tmp_path: Path) -> None:
    replies = exchange(
        tmp_path / "data",
        [
            b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "\xff"}\xfe}',  # invalid UTF-8
            b'{"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"x": "\\ud800"}}',  # a lone surrogate
            b'{"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"x": ' + DEEP.encode() + b"}}",
            b"not json at all",
            b'{"jsonrpc": "2.0", "method": "notifications/unknown", "params": {"x": "\\udfff"}}',
        ],
    )
    by_id = {reply.get("id"): reply for reply in replies}
    for request_id in (1, 2, 3):
        assert by_id[request_id]["error"]["code"] == -32700, by_id[request_id]
        assert by_id[request_id]["error"]["message"].startswith("Parse error: ")
    assert by_id[None]["error"]["code"] == -32700  # no id to be found: null, as JSON-RPC says
    assert len(replies) == 5 and by_id["last"]["result"] == {}  # the notification is not answered
    assert all(len(json.dumps(reply)) < 1000 for reply in replies)  # the input is not echoed


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [
        ('{"id": 7, "jsonrpc": "2.0", "method": "x", "params": ' + DEEP + "}", 7),
        ('{"jsonrpc": "2.0", "id": "a\\"b", "params": [' + DEEP + "]}", 'a"b'),
        ('{"jsonrpc": "2.0", "params": {"id": 5, "x": ' + DEEP + "}}", None),  # a nested id is not the request's
    ],
)
def test_the_id_of_an_unparseable_request_is_found_before_any_nesting(line: str, expected_id: Any) -> None:
    from mcp_types import jsonrpc_message_adapter

    with pytest.raises(Exception) as raised:
        jsonrpc_message_adapter.validate_json(line, by_name=False)
    reply = unreadable_reply(raised.value)
    assert reply is not None and reply.id == expected_id
