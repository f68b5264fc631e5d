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

    @field_validator("namespace")
    @classmethod
    def _namespace_shape(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError(
                "must be 1-64 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
            )
        return value

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "memory.db"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index"
