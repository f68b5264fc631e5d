"""Who may use the HTTP transport, and as whom: origin, bearer token, namespace, rate, size.

`secure_app()` is the streamable HTTP app of the MCP server behind `HttpSecurity`, a pure ASGI
middleware that answers every request it refuses itself, before the SDK sees it, in this order:

    Origin not allowed                   403  (a browser page elsewhere; DNS rebinding)
    too many failed authentications      429  Retry-After (per client address, before the token is looked at)
    no or unknown bearer token           401  WWW-Authenticate: Bearer
    X-Memalpha-Namespace not granted     403
    over the token's rate                429  Retry-After
    a new session over the token's limit 429  (max_sessions_per_token; a session ends by DELETE or idling)
    Content-Length over the limit        413  (bodies without one: the SDK counts the bytes)
    a POST that is not application/json  415

The SDK's own plain-text error responses (a streamed body over the limit) become JSON-RPC error
bodies too (`json_errors`).

Without an auth file the SDK's DNS-rebinding check also answers 421 to a Host that is not loopback.
An admitted request carries its namespace in the ASGI scope; `bind_request_namespace`, an SDK
middleware, sets it as each MCP message's namespace, which `caller.request_namespace()` reads.
Without an auth file every request is the process's own (loopback only, no rate limit).

Every limit here is kept in this process's memory: behind a load balancer, N replicas let a token
make up to N x `rate_limit_per_minute` requests a minute (and an address N x
`auth_failures_per_minute` failed authentications). Shared buckets in the PostgreSQL ledger would
cost a round trip per request; the deployment docs say how to keep the sum where it is wanted.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import DEFAULT_SESSION_IDLE_TIMEOUT
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_memalpha.access import AccessList, Grant
from mcp_memalpha.caller import bound
from mcp_memalpha.server import HEALTH_PATH
from mcp_memalpha.settings import Settings

log = logging.getLogger(__name__)

NAMESPACE_HEADER = "X-Memalpha-Namespace"
# Where an admitted request's namespace travels from the ASGI middleware to the MCP handlers.
SCOPE_NAMESPACE_KEY = "memalpha.namespace"
# ... and the name of the token that sent it: the unit of the per-caller limits.
SCOPE_CALLER_KEY = "memalpha.caller"
# The SDK's own DNS-rebinding check, kept where it protects something: an unauthenticated
# loopback server, which a page on a rebound name (Host: evil.example) could otherwise reach.
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
# A stateful session not used for this long is closed by the SDK, and stops counting here.
SESSION_IDLE_SECONDS = DEFAULT_SESSION_IDLE_TIMEOUT
# Client addresses whose failed authentications are counted; past it, the refilled ones are dropped.
MAX_TRACKED_ADDRESSES = 10_000


def secure_app(server: MCPServer[Any], settings: Settings, access: AccessList | None, host: str) -> ASGIApp:
    """The server's streamable HTTP app (at /mcp), behind the checks of `settings` and `access`."""
    server.middleware.append(bind_request_namespace)
    # The SDK switches its Host and Origin checks together. With tokens its Host check would only
    # turn away the LAN names clients use, and the token is the defence against rebinding; the
    # Origin check is HttpSecurity's own, so it applies either way.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=access is None,
        allowed_hosts=LOOPBACK_HOSTS,
        allowed_origins=list(settings.allowed_origins),
    )
    app = server.streamable_http_app(
        host=host,
        transport_security=security,
        max_request_body_size=settings.max_request_bytes,
        session_idle_timeout=SESSION_IDLE_SECONDS,
        # Stateless: a fresh transport per request, no session id, so any replica answers any request.
        stateless_http=settings.http_stateless,
    )
    return HttpSecurity(app, settings, access)


async def bind_request_namespace(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Act on each MCP message in the namespace granted to the HTTP request that carried it.

    Read from the message's own request rather than from a ContextVar set around the HTTP request:
    the SDK (2.3) does carry the sender's contextvars into a session's handlers, but if it ever
    did not, those would run with the context of the request that opened the session, or none;
    this way a message without an admitted request is refused instead of served in the process's
    namespace. Sync tools run on worker threads, which get a copy of this context (anyio copies it).
    """
    scope = getattr(ctx.request, "scope", {})
    namespace = scope.get(SCOPE_NAMESPACE_KEY)
    if namespace is None:
        # Fail closed: nothing reaches the memory without a namespace that HttpSecurity granted.
        raise MCPError(INVALID_REQUEST, "this message came without an admitted HTTP request; refused")
    with bound(namespace, scope.get(SCOPE_CALLER_KEY)):
        return await call_next(ctx)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, send: Send) -> None:
        # A JSON-RPC error body: MCP clients show its message instead of a bare status.
        error = {"code": INVALID_REQUEST, "message": self.message, "data": {"http_status": self.status}}
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
        headers = {**self.headers, "content-type": "application/json", "content-length": str(len(body))}
        raw = [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


class TokenBucket:
    """`per_minute` requests a minute, in bursts of up to `per_minute`, refilled continuously."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self.level = self.capacity
        self.stamp = now

    def take(self, now: float) -> float:
        """Spend one request: 0.0 if allowed, else the seconds until the next one would be."""
        wait = self.wait(now)
        if wait == 0.0:
            self.level -= 1.0
        return wait

    def wait(self, now: float) -> float:
        """Seconds until one request would be allowed (0.0: now), spending nothing."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.per_second)
        self.stamp = now
        return 0.0 if self.level >= 1.0 else (1.0 - self.level) / self.per_second

    def full(self, now: float) -> bool:
        self.wait(now)
        return self.level >= self.capacity


class SessionCount:
    """The stateful sessions each token has open, as seen from the responses that opened them.

    A session stops counting when a DELETE ends it, when a request for it is answered 404 (the
    SDK no longer has it), or after `SESSION_IDLE_SECONDS` unused, when the SDK closes it.
    """

    def __init__(self) -> None:
        self._last_used: dict[str, dict[str, float]] = {}  # token name -> session id -> when

    def open(self, token: str, now: float) -> int:
        sessions = self._last_used.get(token, {})
        for session_id in [sid for sid, used in sessions.items() if now - used >= SESSION_IDLE_SECONDS]:
            del sessions[session_id]
        return len(sessions)

    def used(self, token: str, session_id: str, now: float) -> None:
        self._last_used.setdefault(token, {})[session_id] = now

    def ended(self, token: str, session_id: str) -> None:
        self._last_used.get(token, {}).pop(session_id, None)


class HttpSecurity:
    """ASGI middleware: admits a request (and sets its namespace in the scope) or refuses it."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        access: AccessList | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.settings = settings
        self.access = access
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._failures: dict[str, TokenBucket] = {}  # client address -> its failed authentications
        self.sessions = SessionCount()
        # Without an auth file the caller is the process itself: its namespace, no rate limit.
        self._anonymous = Grant("anonymous", (settings.namespace,))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # a websocket: nothing here serves one, and the server refuses it (403)
        if scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        address = scope["client"][0] if scope.get("client") else ""
        session_id = headers.get(MCP_SESSION_ID_HEADER)
        admitted = self.admit(headers, address, scope["method"])
        if not isinstance(admitted, Refusal) and admitted[0] is not self._anonymous:
            admitted = self._check_sessions(admitted[0], session_id) or admitted
        if isinstance(admitted, Refusal):
            log.info("refused %s %s: %d %s", scope["method"], scope["path"], admitted.status, admitted.message)
            await admitted.send(send)
            return
        grant, namespace = admitted
        send = json_errors(send)
        if grant is not self._anonymous:
            send = self._counting_sessions(grant, scope["method"], session_id, send)
        scope[SCOPE_NAMESPACE_KEY] = namespace
        scope[SCOPE_CALLER_KEY] = grant.name
        if grant is not self._anonymous:
            # The SDK binds a stateful session to the user that opened it: another token
            # presenting its session id is answered 404, as if the session did not exist.
            scope["user"] = AuthenticatedUser(AccessToken(token="", client_id=grant.name, scopes=[]))
        await self.app(scope, receive, send)

    def admit(self, headers: Headers, address: str = "", method: str = "POST") -> tuple[Grant, str] | Refusal:
        """The caller's grant and namespace, or why it is refused (checks in the order of the docstring)."""
        refusal = self._check_origin(headers.get("origin")) or self._check_failures(address)
        if refusal is not None:
            return refusal
        grant = self._authenticate(headers.get("authorization"))
        if isinstance(grant, Refusal):
            self._failed(address)
            return grant
        namespace = self._namespace(grant, headers.get(NAMESPACE_HEADER))
        if isinstance(namespace, Refusal):
            return namespace
        refusal = (
            self._check_rate(grant)
            or self._check_size(headers.get("content-length"))
            or _check_content_type(method, headers.get("content-type"))
        )
        return refusal if refusal is not None else (grant, namespace)

    def _check_origin(self, origin: str | None) -> Refusal | None:
        if origin is None or origin_allowed(origin, self.settings.allowed_origins):
            return None
        return Refusal(
            403,
            f"Origin {origin!r} is not allowed: add it to allowed_origins "
            "(--allowed-origins / MEMALPHA_ALLOWED_ORIGINS) to let pages from there call this server",
        )

    def _authenticate(self, authorization: str | None) -> Grant | Refusal:
        if self.access is None:
            return self._anonymous
        challenge = 'Bearer realm="mcp-memalpha"'
        if authorization is None:
            return Refusal(401, "Authorization: this server needs 'Authorization: Bearer <token>'", _auth(challenge))
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Refusal(401, "Authorization: must be 'Bearer <token>'", _auth(challenge))
        grant = self.access.authenticate(token.strip())
        if grant is None:
            return Refusal(401, "Authorization: unknown token", _auth(challenge + ', error="invalid_token"'))
        return grant

    def _check_failures(self, address: str) -> Refusal | None:
        bucket = self._failures.get(address)
        wait = bucket.wait(self.clock()) if bucket is not None else 0.0
        if wait == 0.0:
            return None
        retry_after = max(1, math.ceil(wait))
        per_minute = self.settings.auth_failures_per_minute
        return Refusal(
            429,
            f"Authorization: more than {per_minute} failed authentications a minute from {address}; "
            f"retry in {retry_after} s (auth_failures_per_minute)",
            {"Retry-After": str(retry_after)},
        )

    def _failed(self, address: str) -> None:
        if self.access is None:
            return
        now = self.clock()
        if len(self._failures) >= MAX_TRACKED_ADDRESSES:  # an address whose bucket refilled is forgotten
            self._failures = {key: bucket for key, bucket in self._failures.items() if not bucket.full(now)}
            if len(self._failures) >= MAX_TRACKED_ADDRESSES:
                self._failures.clear()
        self._failures.setdefault(address, TokenBucket(self.settings.auth_failures_per_minute, now)).take(now)

    def _check_sessions(self, grant: Grant, session_id: str | None) -> Refusal | None:
        limit = self.settings.max_sessions_per_token
        if session_id is not None or self.sessions.open(grant.name, self.clock()) < limit:
            return None
        return Refusal(
            429,
            f"session: token {grant.name!r} has {limit} sessions open (max_sessions_per_token); end one "
            f"(DELETE with its {MCP_SESSION_ID_HEADER}) or reuse it; an unused one ends after "
            f"{SESSION_IDLE_SECONDS:g} s",
        )

    def _counting_sessions(self, grant: Grant, method: str, session_id: str | None, send: Send) -> Send:
        """`send`, noting the sessions the responses open, use and end for `grant`'s count."""

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                opened = Headers(raw=message.get("headers", [])).get(MCP_SESSION_ID_HEADER)
                sid = session_id or opened
                if sid is not None and (status == 404 or (method == "DELETE" and status < 400)):
                    self.sessions.ended(grant.name, sid)
                elif sid is not None and status < 400:
                    self.sessions.used(grant.name, sid, self.clock())
            await send(message)

        return counting

    def _namespace(self, grant: Grant, asked: str | None) -> str | Refusal:
        if asked is None:
            return grant.namespaces[0]
        if asked in grant.namespaces:
            return asked
        whose = "this server (no auth file)" if grant is self._anonymous else f"token {grant.name!r}"
        return Refusal(
            403,
            f"{NAMESPACE_HEADER}: namespace {asked!r} is not granted to {whose}; it may use {list(grant.namespaces)}",
        )

    def _check_rate(self, grant: Grant) -> Refusal | None:
        if grant is self._anonymous:
            return None
        now = self.clock()
        per_minute = grant.rate_limit_per_minute or self.settings.rate_limit_per_minute
        bucket = self._buckets.setdefault(grant.name, TokenBucket(per_minute, now))
        wait = bucket.take(now)
        if wait == 0.0:
            return None
        retry_after = max(1, math.ceil(wait))
        return Refusal(
            429,
            f"rate limit: token {grant.name!r} may make {per_minute} requests a minute; retry in {retry_after} s",
            {"Retry-After": str(retry_after)},
        )

    def _check_size(self, content_length: str | None) -> Refusal | None:
        limit = self.settings.max_request_bytes
        if content_length is None or not content_length.isdigit() or int(content_length) <= limit:
            return None  # a malformed length is the HTTP server's to refuse
        return Refusal(
            413,
            f"request body: {content_length} bytes is over the limit of {limit} "
            "(max_request_bytes / MEMALPHA_MAX_REQUEST_BYTES)",
        )


def origin_allowed(origin: str, allowed: list[str]) -> bool:
    """Whether `origin` is one of `allowed`, where `scheme://host:*` stands for any port of that host."""
    origin = origin.lower()
    for pattern in allowed:
        pattern = pattern.lower()
        if origin == pattern:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if origin == base or (origin.startswith(base + ":") and origin[len(base) + 1 :].isdigit()):
                return True
    return False


def _check_content_type(method: str, content_type: str | None) -> Refusal | None:
    # The SDK's own rule (a prefix match), answered here with a message that says what is expected.
    if method != "POST" or (content_type or "").lower().startswith("application/json"):
        return None
    return Refusal(415, f"Content-Type: must be application/json (a JSON-RPC message), not {content_type!r}")


def json_errors(send: Send) -> Send:
    """`send`, with the SDK's plain-text error responses (a streamed body over the limit, a bad
    header) turned into JSON-RPC error bodies, as every refusal of this server is."""
    held: list[Message] = []

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            if not content_type or content_type.startswith("text/plain"):  # never a stream: held whole
                held.append(message)
                return
        if not held:
            await send(message)
            return
        held.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            status = held[0]["status"]
            text = b"".join(part.get("body", b"") for part in held[1:]).decode("utf-8", "replace").strip()
            await Refusal(status, _PLAIN_ERROR_HINTS.get(status, text or f"HTTP {status}")).send(send)

    return sending


_PLAIN_ERROR_HINTS = {
    413: "request body: over the limit of max_request_bytes (MEMALPHA_MAX_REQUEST_BYTES)",
}


def _auth(challenge: str) -> dict[str, str]:
    return {"WWW-Authenticate": challenge}
