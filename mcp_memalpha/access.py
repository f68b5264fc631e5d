"""Access tokens for the HTTP transport: the auth file, what each token is granted, new tokens.

The auth file (TOML or JSON, chosen by its suffix) lists tokens by name, each with the SHA-256 of
the token (preferred: the file then holds no secret) or the token itself, the namespaces it may
read and write (the first is its default) and optionally its own rate limit:

    [[tokens]]
    name = "laptop"
    sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    namespaces = ["alice", "shared"]
    rate_limit_per_minute = 120

Nothing here knows about HTTP; `http_security` asks `AccessList.authenticate` who a caller is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcp_memalpha.settings import NAMESPACE_PATTERN
from mcp_memalpha.validation import Problem, validation_problems

TOKEN_PREFIX = "mema_"
# A plain token in the file must be long enough not to be guessed; made ones are 48 characters.
MIN_TOKEN_CHARS = 24
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$"


class AuthFileError(ValueError):
    """The auth file is unreadable or wrong; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class Grant:
    """What one token may do: act in `namespaces` (the first by default), at its own rate if set."""

    name: str
    namespaces: tuple[str, ...]
    rate_limit_per_minute: int | None = None
    digest: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class AccessList:
    grants: tuple[Grant, ...]

    def authenticate(self, presented: str) -> Grant | None:
        """The grant of the token `presented`, or None.

        Digests are compared in constant time, and against every entry, so the time taken says
        nothing about how close a guess came or which entry it was near.
        """
        digest = token_digest(presented)
        found = None
        for grant in self.grants:
            if hmac.compare_digest(grant.digest, digest):
                found = grant
        return found


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def auth_file_entry(name: str, token: str, namespaces: list[str], rate_limit_per_minute: int | None = None) -> str:
    """The TOML entry granting `token` (by its SHA-256 only) the `namespaces`, checked like a loaded one."""
    entry: dict[str, Any] = {"name": name, "sha256": token_digest(token).hex(), "namespaces": namespaces}
    if rate_limit_per_minute is not None:
        entry["rate_limit_per_minute"] = rate_limit_per_minute
    try:
        _TokenEntry.model_validate(entry)
    except ValidationError as exc:
        problem = validation_problems(exc)[0]
        raise AuthFileError(f"{problem.loc[0]}: {_reason(problem)}") from None
    # json.dumps writes strings and lists that are valid TOML too.
    return "[[tokens]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())


def load_access_list(path: Path) -> AccessList:
    """Read and check the auth file; raises AuthFileError naming the entry and field at fault."""
    return _parse(_read(path), path)


class _TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    token: str | None = Field(None, min_length=MIN_TOKEN_CHARS)
    namespaces: list[str] = Field(min_length=1)
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1_000_000)

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower_hex(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for namespace in value:
            if not NAMESPACE_PATTERN.fullmatch(namespace):
                raise ValueError(f"{namespace!r} is not a valid namespace")
        if len(set(value)) != len(value):
            raise ValueError("lists a namespace twice")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError("give exactly one of 'sha256' (preferred: the file then holds no secret) or 'token'")
        return self

    def grant(self) -> Grant:
        digest = bytes.fromhex(self.sha256) if self.sha256 is not None else token_digest(self.token or "")
        return Grant(self.name, tuple(self.namespaces), self.rate_limit_per_minute, digest)


class _TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: list[_TokenEntry] = Field(min_length=1)


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthFileError(f"{path}: cannot be read ({exc})") from None
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise AuthFileError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    raise AuthFileError(f"{path}: must end in .toml or .json (that is how its format is told)")


def _parse(raw: Any, path: Path) -> AccessList:
    try:
        parsed = _TokenFile.model_validate(raw)
    except ValidationError as exc:
        problem = validation_problems(exc)[0]
        raise AuthFileError(f"{path}: {_where(problem.loc, raw)}: {_reason(problem)}") from None
    grants = tuple(entry.grant() for entry in parsed.tokens)
    _check_unique(grants, path)
    return AccessList(grants)


def _check_unique(grants: tuple[Grant, ...], path: Path) -> None:
    names: set[str] = set()
    digests: dict[bytes, str] = {}
    for index, grant in enumerate(grants):
        where = f"tokens[{index}] ({grant.name!r})"
        if grant.name in names:
            raise AuthFileError(f"{path}: {where}: name: another entry is already named {grant.name!r}")
        if grant.digest in digests:
            raise AuthFileError(f"{path}: {where}: the same token as entry {digests[grant.digest]!r}")
        names.add(grant.name)
        digests[grant.digest] = grant.name


def _where(loc: tuple[int | str, ...], raw: Any) -> str:
    """`tokens[1] ('laptop'): namespaces[0]` for a pydantic error location."""
    if len(loc) < 2 or loc[0] != "tokens":
        return ".".join(map(str, loc)) or "the file"
    index = loc[1]
    entries = raw.get("tokens") if isinstance(raw, dict) else None
    entry = entries[index] if isinstance(entries, list) and isinstance(index, int) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    where = f"tokens[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
    rest = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[2:]).lstrip(".")
    return f"{where}: {rest or 'entry'}"


def _reason(problem: Problem) -> str:
    loc, kind = problem.loc, problem.kind
    if not loc:
        return "must be a table (TOML) or an object (JSON) holding a 'tokens' list"
    if kind == "missing":
        return "is required" + (" (a list of token entries)" if loc == ("tokens",) else "")
    if kind == "extra_forbidden":
        known = "name, sha256, token, namespaces, rate_limit_per_minute" if len(loc) > 2 else "tokens"
        return f"is not a known field (known: {known})"
    if kind == "too_short" and loc == ("tokens",):
        return "lists no token"
    if kind == "string_pattern_mismatch" and loc[-1] == "sha256":
        return "must be the 64 hexadecimal digits of the token's SHA-256 (see `mcp-memalpha token new`)"
    if kind == "string_pattern_mismatch" and loc[-1] == "name":
        return "must be 1-64 letters, digits or '_.@:-', starting with a letter or digit"
    if kind == "string_too_short" and loc[-1] == "token":
        return f"must be at least {MIN_TOKEN_CHARS} characters (make one with `mcp-memalpha token new`)"
    return problem.message
