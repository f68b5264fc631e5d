"""The HTTP server's connections: read deadlines, a cap per address and in all, logs that cannot flood.

uvicorn closes a connection only after a response (`timeout_keep_alive`): a socket that sends
half a request line, or headers and part of a body, and then nothing, is held forever, and enough
of them use up the process's file descriptors (then `accept()` fails with EMFILE and asyncio
logs that failure once per pending connection, many times a second). `GuardedH11Protocol` is
uvicorn's h11 protocol with the bounds it lacks:

- a request's line and headers must arrive within `http_header_timeout_seconds` of the
  connection opening (or of the previous response), its body within `http_body_timeout_seconds`
  of its headers; past that the connection is closed;
- at most `http_max_connections_per_address` connections per client address and
  `http_max_connections` in all, the latter kept under the file-descriptor limit with room for
  the store's files. A connection over a cap makes room by closing the longest-waiting connection
  that has not sent a complete request (of that address, for the per-address cap); if every
  connection is busy with a request, the new one is closed instead. Idle sockets therefore
  cannot keep out a client that sends its request.

`quiet_floods()` puts a `FloodFilter` on the loggers a remote peer can make write (asyncio's
accept errors, uvicorn's "Invalid HTTP request", our refusals): each message shape is logged at
most a few times a minute, then counted and summarised.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from mcp_memalpha.settings import Settings

log = logging.getLogger(__name__)

# File descriptors left to the store (SQLite, WAL, LanceDB files, the model) and the runtime.
MIN_FD_RESERVE = 64
UVICORN_BACKLOG = 2048  # uvicorn's default listen backlog
# Loggers that a peer can make write, without a token: accept errors, bad requests, refusals.
FLOODABLE_LOGGERS = ("asyncio", "uvicorn.error", "mcp_memalpha.http_security")
# A request line and headers larger than this are refused (400) before they are complete.
MAX_HEADER_BYTES = 64 * 1024


def fd_reserve(file_limit: int | None = None) -> tuple[int, int] | None:
    """The file limit (default: this process's) and the descriptors kept from connections for the
    rest (a quarter of it, at least 64); None when the limit is infinite."""
    if file_limit is None:
        file_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if file_limit == resource.RLIM_INFINITY:
        return None
    return file_limit, max(MIN_FD_RESERVE, file_limit // 4)


def connection_cap(wanted: int, file_limit: int | None = None) -> int:
    """`wanted` connections, or fewer, leaving the reserve (`fd_reserve`) to the rest."""
    limits = fd_reserve(file_limit)
    if limits is None:
        return wanted
    limit, reserve = limits
    return max(1, min(wanted, limit - reserve))


def accept_backlog(file_limit: int | None = None) -> int:
    """uvicorn's listen `backlog`, which asyncio also takes as how many sockets it accepts in one
    wake-up, before any of them reaches the guard (at uvicorn's 2048, a burst of idle sockets
    filled a 1,024-descriptor limit before the cap could close one). A quarter of the reserve
    that `connection_cap` leaves, so a burst cannot use up the store's descriptors."""
    limits = fd_reserve(file_limit)
    if limits is None:
        return UVICORN_BACKLOG
    return max(16, min(UVICORN_BACKLOG, limits[1] // 4))


class ConnectionGuard:
    """The connections of one server, by address, for the caps."""

    def __init__(self, max_connections: int, max_per_address: int, header_timeout: float, body_timeout: float):
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.by_address: dict[str, set[GuardedH11Protocol]] = {}
        self.total = 0
        self.refused = 0  # connections closed on arrival, every one busy
        self.evicted = 0  # waiting connections closed to make room

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionGuard:
        return cls(
            connection_cap(settings.http_max_connections),
            settings.http_max_connections_per_address,
            settings.http_header_timeout_seconds,
            settings.http_body_timeout_seconds,
        )

    def admit(self, connection: GuardedH11Protocol) -> bool:
        """Register `connection`, closing a waiting one if a cap is reached; False: none could go."""
        peers = self.by_address.setdefault(connection.address, set())
        if len(peers) >= self.max_per_address and not self._evict(peers):
            self.refused += 1
            return False
        if self.total >= self.max_connections and not self._evict(self._all()):
            self.refused += 1
            return False
        peers.add(connection)
        self.total += 1
        return True

    def release(self, connection: GuardedH11Protocol) -> None:
        peers = self.by_address.get(connection.address)
        if peers is None or connection not in peers:
            return
        peers.discard(connection)
        self.total -= 1
        if not peers:
            del self.by_address[connection.address]

    def _all(self) -> list[GuardedH11Protocol]:
        return [connection for peers in self.by_address.values() for connection in peers]

    def _evict(self, candidates: Any) -> bool:
        waiting = [connection for connection in candidates if connection.waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda connection: connection.waiting_since or 0.0)
        self.release(oldest)
        oldest.close()
        self.evicted += 1
        return True


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under a `ConnectionGuard`: read deadlines and connection caps."""

    guard: ConnectionGuard  # set on the subclass `guarded_protocol` makes

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any], **kwargs: Any):
        super().__init__(config, server_state, app_state, **kwargs)
        self.address = ""
        # When it began waiting for a request's headers (None: a request is being read or served).
        self.waiting_since: float | None = None
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.address = self.client[0] if self.client else ""
        if not self.guard.admit(self):
            self.close()
            return
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        self._set_phase(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def close(self) -> None:
        self._set_phase(None)
        if not self.transport.is_closing():
            self.transport.close()

    def _track(self) -> None:
        """Arm the deadline of what the connection now waits for from the client."""
        if self.transport.is_closing():
            self._set_phase(None)
            return
        state = self.conn.their_state
        self._set_phase("headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None)

    def _set_phase(self, phase: str | None) -> None:
        if phase == self._phase:
            return
        self._phase = phase
        self.waiting_since = time.monotonic() if phase == "headers" else None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if phase is not None:
            seconds = self.guard.header_timeout if phase == "headers" else self.guard.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        log.debug("closing a connection from %s: its request %s did not arrive in time", self.address, self._phase)
        self.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` whose connections share `guard`."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class FloodFilter(logging.Filter):
    """Lets each message shape through `burst` times per `window` seconds, then counts it; the next
    record of that shape after the window says how many were left out."""

    def __init__(self, burst: int = 5, window: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, str], list[Any]] = {}  # shape -> [window start, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        key = (record.name, str(record.msg).split("\n", 1)[0][:200])
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            if state is not None and state[2]:
                record.msg = f"{record.msg} [{state[2]} more like this in the last {now - state[0]:.0f} s not logged]"
            if len(self._seen) >= 1000:  # message shapes are few; this only bounds a misuse
                self._seen.clear()
            state = self._seen[key] = [now, 0, 0]
        if state[1] >= self.burst:
            state[2] += 1
            return False
        state[1] += 1
        return True


def quiet_floods(filter_: FloodFilter | None = None) -> FloodFilter:
    """Put one `FloodFilter` on every logger a remote peer can make write."""
    filter_ = filter_ or FloodFilter()
    for name in FLOODABLE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, FloodFilter) for existing in logger.filters):
            logger.addFilter(filter_)
    return filter_


def uvicorn_config(app: Any, settings: Settings, host: str, port: int) -> Any:
    """A `uvicorn.Config` serving `app` with the guard, the read deadlines and flood-proof logging."""
    import uvicorn

    guard = ConnectionGuard.from_settings(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        http=guarded_protocol(guard),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        backlog=accept_backlog(),
    )
    quiet_floods()  # after Config, which (re)configures uvicorn's loggers
    log.info(
        "connections: at most %d (%d per address); headers within %g s, bodies within %g s",
        guard.max_connections,
        guard.max_per_address,
        guard.header_timeout,
        guard.body_timeout,
    )
    return config


def serve(app: Any, settings: Settings, host: str, port: int) -> None:
    """Run `app` under uvicorn, guarded (`uvicorn_config`)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, settings, host, port)).run()
