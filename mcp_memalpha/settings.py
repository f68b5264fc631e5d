"""Settings: one class, read once per process, from arguments or `MEMALPHA_*` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


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
    namespace: str = Field(
        "default",
        description="Namespace this process reads and writes; each namespace is a separate memory.",
    )
    core_capacity_tokens: int = Field(512, ge=16, le=8192, description="Capacity of core memory, in WordPiece tokens.")
    max_content_chars: int = Field(
        8000, ge=100, le=1_000_000, description="Largest episodic/semantic item accepted, in characters."
    )
    max_query_chars: int = Field(2000, ge=10, le=100_000, description="Longest search query accepted.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level; logs go to stderr, never stdout."
    )

    # The curator behind the memorize tools ------------------------------------------------
    policy: str = Field(
        "off",
        description="The curator model behind the memorize tools: 'off' (no memorize tools), 'default' (the "
        "embedded SmolLM2 model) or the path of a GGUF model file. Needs the 'policy' extra (llama.cpp).",
    )
    policy_format: str | None = Field(
        None, description="Wire format of the model's tool calls; omit to let the curator pick it for the model."
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

    @field_validator("policy")
    @classmethod
    def _policy_choice(cls, value: str) -> str:
        choice = value.strip()
        if choice.lower() in ("off", "default"):
            return choice.lower()
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ValueError(f"{value!r} is not 'off', 'default' or the path of an existing GGUF model file")
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
    def ledger_path(self) -> Path:
        return self.data_dir / "memory.db"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index"
