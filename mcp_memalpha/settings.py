"""Settings: one class, read once per process, from arguments or `MEMALPHA_*` variables."""

from __future__ import annotations

import re
from datetime import tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# What a browser may be on to call the HTTP transport: pages served from this machine only.
LOOPBACK_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*")
# scheme://host[:port], or :* for any port: what a browser sends as Origin (no path).
ORIGIN_PATTERN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}|\*))?$")


def default_data_dir() -> Path:
    """The per-user data folder (e.g. ~/.local/share/mcp-memalpha on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mcp-memalpha", appauthor=False))


class Settings(BaseSettings):
    """Everything a memory server process can be configured with.

    Each field can be set as `MEMALPHA_<FIELD>` in the environment (what a Claude Desktop
    configuration passes in `env`) or as a command-line option of `mcp-memalpha serve`.
    """

    model_config = SettingsConfigDict(env_prefix="MEMALPHA_", extra="forbid", frozen=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder holding the SQLite ledger (memory.db) and the LanceDB index (index/).",
    )
    database_url: str | None = Field(
        None,
        description="PostgreSQL ledger shared by several server processes and hosts (postgresql://user:pass@host/db; "
        "needs the 'postgres' extra). The data directory then holds only this process's search index. "
        "Unset: the SQLite ledger memory.db in the data directory.",
    )
    namespace: str = Field(
        "default",
        description="Namespace this process reads and writes; each namespace is a separate memory.",
    )
    core_capacity_tokens: int = Field(512, ge=16, le=8192, description="Capacity of core memory, in WordPiece tokens.")
    max_content_chars: int = Field(
        8000, ge=100, le=1_000_000, description="Largest episodic/semantic item accepted, in characters."
    )
    max_query_chars: int = Field(2000, ge=10, le=100_000, description="Longest search query accepted.")
    search_excerpt_tokens: int = Field(
        36,
        ge=0,
        le=100_000,
        description="Longest text of one search result, in WordPiece tokens (twice it for the first 4): a "
        "longer memory shows its sentences most relevant to the query (memory_get returns it whole); 0 "
        "shows every result whole.",
    )
    max_items_per_namespace: int | None = Field(
        None,
        ge=1,
        description="Most live (not deleted) episodic and semantic memories one namespace may hold; an insert, "
        "restore or import beyond it is refused. Unset: no limit.",
    )

    # The operation log (history and undo) --------------------------------------------------
    history_versions: int | None = Field(
        None,
        ge=1,
        description="Versions of each memory (and of each core paragraph) the operation log keeps through "
        "compaction, newest first; older ones leave memory_history. Unset: every version is kept.",
    )
    undo_days: float = Field(
        7.0,
        ge=0,
        le=36_500,
        description="Finished memorize jobs stay for this many days: memorize_status reports them and "
        "memorize_undo can revert them. Compaction then deletes them, with their chunks.",
    )
    compact_every: int = Field(
        10_000,
        ge=0,
        description="Compact the operation log automatically each time it grows by this many operations "
        "(0: only with `mcp-memalpha compact`).",
    )
    time_zone: str | None = Field(
        None,
        description="IANA time zone of the user (e.g. 'Europe/Berlin'): times in words such as 'yesterday' or "
        "'last week' are read in it, and the server tells clients today's date in it. Unset: the machine's zone.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level; logs go to stderr, never stdout."
    )
    auth_file: Path | None = Field(
        None,
        description=(
            "HTTP transport: file of access tokens (TOML or JSON; see README 'Security'). With it every "
            "request needs `Authorization: Bearer <token>` and acts in a namespace granted to that token; "
            "without it only loopback addresses are served, in `namespace`."
        ),
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_ORIGINS),
        description=(
            "HTTP transport: browser origins allowed to call (a request with any other Origin header is "
            "refused with 403; requests without one pass). Comma-separated; `:*` matches any port."
        ),
    )
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="HTTP transport: largest request body, in bytes."
    )
    rate_limit_per_minute: int = Field(
        600,
        ge=1,
        le=1_000_000,
        description=(
            "HTTP transport: requests per minute each access token may make (bursts up to that many); "
            "a token's own `rate_limit_per_minute` in the auth file overrides it."
        ),
    )
    max_sessions_per_token: int = Field(
        100,
        ge=1,
        le=100_000,
        description="HTTP transport: stateful sessions one access token may have open; one more is refused "
        "(429) until one ends (DELETE, or 30 minutes unused).",
    )
    auth_failures_per_minute: int = Field(
        10,
        ge=1,
        le=1_000_000,
        description="HTTP transport (with an auth file): failed authentications one client address may make a "
        "minute (bursts up to that many); past them, its requests are refused (429) before any token is checked.",
    )
    http_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="HTTP transport: a request's line and headers must arrive within this many seconds of the "
        "connection opening (or of the previous response), else the connection is closed.",
    )
    http_body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="HTTP transport: a request's body must arrive within this many seconds of its headers.",
    )
    http_max_connections: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="HTTP transport: most open connections; kept under the process's file limit, with a quarter "
        "of it (at least 64) left to the store. Over it, the connection waiting longest for a request is closed.",
    )
    http_max_connections_per_address: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="HTTP transport: most open connections from one client address (the same rule over it).",
    )
    http_stateless: bool = Field(
        False,
        description="HTTP transport: keep no MCP session between requests, so any server process on the same "
        "data (a replica behind a load balancer) can answer any request; every request is authenticated on its "
        "own. Server-to-client requests and notifications between calls are then unavailable.",
    )
    index_poll_seconds: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Check the ledger this often for writes made by other processes (replicas, workers) and "
        "catch the search index up in the background. Unset: the index catches up after this process's own "
        "writes, before each search and, on PostgreSQL, when another process's write is notified (LISTEN/NOTIFY; "
        "the poll is then the fallback for a lost notification). On SQLite an idle stdio server then loads nothing.",
    )
    health_max_index_lag: int | None = Field(
        None,
        ge=0,
        description="HTTP transport: /healthz answers 503 when this server's search index is more than this many "
        "ledger operations behind (a replica whose index stopped following the log). Unset: lag is reported "
        "only.",
    )
    max_calls_per_token: int = Field(
        8,
        ge=1,
        le=1000,
        description="Tool calls of one caller (an HTTP token; the stdio client) run at most this many at a "
        "time; more wait their turn without holding a worker thread.",
    )
    max_waits_per_token: int = Field(
        4,
        ge=1,
        le=1000,
        description="Calls that ask to wait (memorize_status with wait_seconds) one caller may have waiting at "
        "a time, on threads of their own; one more is refused at once.",
    )

    # The curator behind the memorize tools ------------------------------------------------
    policy: str = Field(
        "off",
        description="The curator model behind the memorize tools: 'off' (no memorize tools), 'default' (the "
        "embedded SmolLM2 model with its GRPO-trained adapter), 'untrained' (the embedded model alone) or the "
        "path of a GGUF model or LoRA adapter file. Needs the 'policy' extra (llama.cpp).",
    )
    policy_format: str | None = Field(
        None, description="Wire format of the model's tool calls; omit to let the curator pick it for the model."
    )
    policy_prompt: Path | None = Field(
        None,
        description="A JSON file with the memalpha format's instruction texts (docs/curator.md, e.g. the paper's); "
        "omit for the project's own.",
    )
    policy_max_chunk_tokens: int = Field(
        2048, ge=16, le=32_768, description="Longest chunk memorize accepts, in WordPiece tokens."
    )
    policy_max_calls: int = Field(12, ge=1, le=100, description="Most tool calls the curator makes for one chunk.")
    policy_max_steps: int = Field(3, ge=1, le=20, description="Most generations (rounds of calls) per chunk.")
    policy_max_new_tokens: int = Field(512, ge=16, le=8192, description="Most tokens the model writes per step.")
    policy_max_queue: int = Field(
        100, ge=1, le=100_000, description="Most unfinished memorize jobs one namespace may have queued."
    )
    policy_max_attempts: int = Field(
        3, ge=1, le=20, description="Attempts (failed or interrupted runs) before a memorize job is marked failed."
    )
    curation: bool = Field(
        True,
        description="Whether this server runs the memorize jobs itself (loading the curator model). Off, it only "
        "queues them (the memorize tools are still served when `policy` is on) for `mcp-memalpha worker` "
        "processes on the same data, so it needs no llama.cpp.",
    )
    policy_lease_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How long a worker's claim on a job lasts without a heartbeat; after that another "
        "worker (or the same server restarted) takes the job over.",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_shape(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError(
                "must be 1-64 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL, postgresql://user:password@host:port/database")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError):  # not found is a KeyError, a malformed key a ValueError
            raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Berlin' or 'UTC'") from None
        return value

    @property
    def zone(self) -> tzinfo:
        """The user's zone: `time_zone`, else the machine's (following its daylight saving time)."""
        if self.time_zone is None:
            from dateutil.tz import tzlocal

            return tzlocal()
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.time_zone)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # From the environment or the command line: one comma-separated string.
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origin_shape(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not ORIGIN_PATTERN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host or scheme://host:port "
                    "(port * for any), e.g. https://app.example.com or http://localhost:*"
                )
        return value

    @field_validator("policy")
    @classmethod
    def _policy_choice(cls, value: str) -> str:
        choice = value.strip()
        if choice.lower() in ("off", "default", "untrained"):
            return choice.lower()
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ValueError(
                f"{value!r} is not 'off', 'default', 'untrained' or the path of an existing GGUF model or adapter file"
            )
        try:
            with path.open("rb") as file:
                magic = file.read(4)
        except OSError as exc:
            raise ValueError(f"{value!r} cannot be read ({exc.strerror})") from None
        if magic != b"GGUF":
            raise ValueError(f"{value!r} is not a GGUF model file (it does not start with the GGUF magic bytes)")
        return str(path.resolve())

    @property
    def policy_on(self) -> bool:
        return self.policy != "off"

    @property
    def curates_here(self) -> bool:
        """Whether this process loads the curator and runs memorize jobs (not only queues them)."""
        return self.policy_on and self.curation

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "memory.db"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index"
