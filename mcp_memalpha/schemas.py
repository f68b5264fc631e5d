"""The JSON schemas the tools publish: pydantic's, without what only costs a model's context.

Everything `tools/list` returns sits in the model's context, so the published schemas say each
thing once: no `title` (pydantic's title-cased copy of each property name), an optional
argument as its plain type (omitting it is how a client says "none"; the description says what
omitting means), and result schemas as types only: what a result means is said in the tool's
description, and `required` would say nothing, since a result carries every field of its model
(the SDK dumps them all, null where there is no value). Validation is untouched: the pydantic
models still check every call and every result.
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}


def input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An argument model's schema as published: titles dropped, `X | None = None` as plain X."""
    return _compact(schema, result=False)


def output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A result model's schema as published: types and enums only."""
    return _compact(schema, result=True)


def _compact(node: Any, result: bool) -> Any:
    if isinstance(node, list):
        return [_compact(value, result) for value in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (result and key in ("description", "default", "required")):
            continue
        if key in ("properties", "$defs"):  # maps of names: each value is a schema
            out[key] = {name: _compact(sub, result) for name, sub in value.items()}
        else:
            out[key] = _compact(value, result)
    return _without_null(out, result)


def _without_null(node: dict[str, Any], result: bool) -> dict[str, Any]:
    """`anyOf: [X, null]`: an argument as X alone (its default None dropped), a result's plain
    type as `type: [X, "null"]`; anything else as it is."""
    branches = node.get("anyOf")
    if not branches or _NULL not in branches or len(branches) != 2:
        return node
    other = next(branch for branch in branches if branch != _NULL)
    rest = {key: value for key, value in node.items() if key != "anyOf"}
    if not result:
        if rest.get("default", ...) is None:
            del rest["default"]
        return {**other, **rest}
    if set(other) == {"type"} and isinstance(other["type"], str):
        return {"type": [other["type"], "null"], **rest}
    return node
