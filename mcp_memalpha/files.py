"""File modes of what the memory writes: private to the user running it.

A memory holds what someone told an assistant, so nothing of it is readable by other local users:
folders are created 0700 and files 0600 (explicitly where we create them, and through the umask of
the server and of exports for what libraries create: SQLite's WAL, LanceDB's files). What was made
before, or by the user, is left as it is, with a warning at start-up when others can read it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077

log = logging.getLogger(__name__)


def private_umask() -> None:
    """Make every file this process creates from now on 0600 and every folder 0700 (or tighter)."""
    os.umask(PRIVATE_UMASK)


def exposure(path: Path) -> str | None:
    """What other users may do with `path` ('readable by others', 'writable by its group', ...), or None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    found = [
        f"{access} by {who}"
        for who, read, write in (("its group", stat.S_IRGRP, stat.S_IWGRP), ("others", stat.S_IROTH, stat.S_IWOTH))
        for access, bit in (("readable", read), ("writable", write))
        if mode & bit
    ]
    return ", ".join(found) or None


def warn_if_exposed(path: Path, what: str) -> bool:
    """Log a warning when others may read or write `path`; returns whether it did."""
    found = exposure(path)
    if found:
        mode = stat.S_IMODE(path.stat().st_mode)
        private = "700" if path.is_dir() else "600"
        log.warning("%s %s is %s (mode %o); make it private: chmod %s %s", what, path, found, mode, private, path)
    return found is not None
