"""Memory ids: short enough for a small model to copy, never reused.

An id is a type letter, a dash and six characters of Crockford's base32 (no i, l, o, u), e.g.
`e-7kq2mx`. Uniqueness is not left to chance: the ledger's primary key rejects a repeat and
the insert draws again; deleted ids stay as tombstones, so an id never names two memories.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
PREFIX = {"episodic": "e", "semantic": "s"}
TYPE_OF_PREFIX = {v: k for k, v in PREFIX.items()}
ID_PATTERN = re.compile(r"^[es]-[0-9a-hjkmnp-tv-z]{4,32}$")
# Job ids are longer: they also tag every write a job makes, and a clash would merge two jobs' undo.
JOB_ID_PATTERN = re.compile(r"^j-[0-9a-hjkmnp-tv-z]{10}$")


def new_id(memory_type: str, length: int = 6) -> str:
    return PREFIX[memory_type] + "-" + "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_job_id() -> str:
    return "j-" + "".join(secrets.choice(ALPHABET) for _ in range(10))


def normalize_id(raw: str) -> str:
    """Forgive the usual copying slips (case, spaces, quotes, brackets) before validating."""
    return raw.strip().strip("\"'`[]<>()").strip().lower()


def is_valid_id(memory_id: str) -> bool:
    return isinstance(memory_id, str) and bool(ID_PATTERN.fullmatch(memory_id))


def is_valid_job_id(job_id: str) -> bool:
    return isinstance(job_id, str) and bool(JOB_ID_PATTERN.fullmatch(job_id))
