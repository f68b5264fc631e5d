"""Moving in from another memory server: its files, as lines of our own export format.

Each converter reads a peer's file and returns the lines `transfer.import_jsonl` consumes (a
header, then one semantic item per fact), so a peer import is validated in full and applied in
one transaction like any import: a bad file changes nothing.

- `server-memory`: the official `@modelcontextprotocol/server-memory`'s `memory.jsonl`, one JSON
  object a line: `{"type": "entity", "name", "entityType", "observations": [...]}` and
  `{"type": "relation", "from", "to", "relationType"}`. Each observation becomes one memory that
  starts with its entity's name and type; each relation one memory naming both entities; an
  entity without observations one memory saying what it is.
- `mem0`: OpenMemory's backup export (`POST /api/v1/backup/export`: a zip holding `memories.json`),
  that `memories.json` alone, or a dump of mem0's `get_all()` (a list, or `{"results": [...]}`,
  of `{"id", "memory", "created_at", "updated_at", ...}`). Deleted memories are left out.

Ids are derived from what identifies a fact in the peer (the entity and observation text; mem0's
own id), so importing the same file again finds the memories already there.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.ids import ALPHABET, PREFIX
from mcp_memalpha.memory import now_iso
from mcp_memalpha.timeparse import from_stored

Peer = Literal["server-memory", "mem0"]
PEERS: tuple[Peer, ...] = ("server-memory", "mem0")


def peer_export_lines(peer: Peer, path: Path, namespace: str) -> list[str]:
    """The peer's file at `path` as mcp-memalpha export lines; raises InvalidArgument naming the
    place in the file and what is wrong with it."""
    convert: Callable[[Path], Iterator[tuple[str, str, str | None]]] = {
        "server-memory": _server_memory_facts,
        "mem0": _mem0_facts,
    }[peer]
    now = now_iso()
    header = {"record": "header", "format": "mcp-memalpha", "format_version": 1, "exported_at": now}
    lines = [json.dumps(header)]
    for key, content, created in convert(path):
        lines.append(json.dumps(_item(f"{peer}\0{key}", namespace, content, created or now), ensure_ascii=False))
    return lines


def _item(key: str, namespace: str, content: str, created: str) -> dict[str, Any]:
    return {
        "record": "item",
        "id": _stable_id(key),
        "namespace": namespace,
        "memory_type": "semantic",
        "content": content,
        "event_time": None,
        "created_at": created,
        "updated_at": created,
        "version": 1,
        "source": "import",
    }


def _stable_id(key: str) -> str:
    """A semantic memory id drawn from `key`'s hash (16 base32 characters: no two facts meet)."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:10], "big")
    chars = [ALPHABET[(digest >> (5 * i)) & 31] for i in range(16)]
    return PREFIX["semantic"] + "-" + "".join(chars)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument("file", f"is not UTF-8 text (byte {exc.start})") from None


def _json_lines(text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"line {number}", f"is not JSON ({exc.msg})") from None


def _field(record: dict[str, Any], name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{where}: {name}", "is missing or not a non-empty string")
    return value.strip()


# the official memory server -------------------------------------------------------------------
def _server_memory_facts(path: Path) -> Iterator[tuple[str, str, str | None]]:
    found = False
    for number, record in _json_lines(_text(path)):
        where = f"line {number}"
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "entity":
            yield from _entity_facts(record, where)
        elif kind == "relation":
            frm, to = _field(record, "from", where), _field(record, "to", where)
            relation = _field(record, "relationType", where)
            yield f"relation\0{frm}\0{relation}\0{to}", f"{frm} {relation.replace('_', ' ')} {to}", None
        else:
            raise InvalidArgument(f"{where}: type", f"{kind!r} is not 'entity' or 'relation'")
        found = True
    if not found:
        raise InvalidArgument("file", "is empty; expected the server-memory memory.jsonl")


def _entity_facts(record: dict[str, Any], where: str) -> Iterator[tuple[str, str, str | None]]:
    name, kind = _field(record, "name", where), _field(record, "entityType", where)
    observations = record.get("observations", [])
    if not isinstance(observations, list) or not all(isinstance(o, str) for o in observations):
        raise InvalidArgument(f"{where}: observations", "is not a list of strings")
    said = [o.strip() for o in observations if o.strip()]
    for observation in said:
        yield f"entity\0{name}\0{observation}", f"{name} ({kind}): {observation}", None
    if not said:
        yield f"entity\0{name}", f"{name} is a {kind}", None


# mem0 / OpenMemory ----------------------------------------------------------------------------
def _mem0_facts(path: Path) -> Iterator[tuple[str, str, str | None]]:
    records = _mem0_records(path)
    if not records:
        raise InvalidArgument("file", "holds no memories; expected a mem0 or OpenMemory export")
    for number, record in enumerate(records, start=1):
        where = f"memory {number}"
        if not isinstance(record, dict):
            raise InvalidArgument(where, "is not a JSON object")
        if record.get("state") == "deleted" or record.get("deleted_at"):
            continue
        text = record.get("memory", record.get("content"))
        content = _field({"memory": text}, "memory", where)
        created = record.get("created_at")
        if created is not None and not isinstance(created, str):
            raise InvalidArgument(f"{where}: created_at", "is not a date/time string")
        when = from_stored(created, f"{where}: created_at").iso if created else None
        yield str(record.get("id") or content), content, when


def _mem0_records(path: Path) -> list[Any]:
    """The list of memories in any of mem0's export shapes."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "memories.json"]
            if not names:
                raise InvalidArgument("file", "is a zip without memories.json; expected an OpenMemory export")
            text = io.TextIOWrapper(archive.open(names[0]), encoding="utf-8").read()
    else:
        text = _text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument("file", f"is not JSON ({exc.msg} at line {exc.lineno})") from None
    return _memory_list(data)


def _memory_list(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("memories", "results"):
            if isinstance(data.get(key), list):
                return list(data[key])
    raise InvalidArgument("file", "has no 'memories' or 'results' list; expected a mem0 or OpenMemory export")
