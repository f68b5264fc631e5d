"""Who sent the MCP message being served: the namespace and token name its HTTP request was granted.

`http_security.bind_request_namespace` binds them around each message that came over HTTP; the
server's handlers read them here. Kept apart from `http_security` so a stdio server, whose
messages carry neither, never imports the HTTP stack (~13 ms of its start).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_namespace: ContextVar[str | None] = ContextVar("memalpha_request_namespace", default=None)
_caller: ContextVar[str | None] = ContextVar("memalpha_request_caller", default=None)


def request_namespace() -> str | None:
    """The namespace granted to the HTTP request being served; None outside one (stdio, in-process)."""
    return _namespace.get()


def request_caller() -> str | None:
    """The name of the token that sent the HTTP request being served ('anonymous' without an auth
    file); None outside one."""
    return _caller.get()


@contextmanager
def bound(namespace: str, caller: str | None) -> Iterator[None]:
    """Serve what runs inside as a message of `caller`'s, in `namespace`."""
    reset_namespace, reset_caller = _namespace.set(namespace), _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(reset_caller)
        _namespace.reset(reset_namespace)
