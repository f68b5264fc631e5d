"""The server's clock: "now" in the user's zone, the zone's name, and a date as people write it.

Apart from `timewords` (reading times in words) so the server's instructions, which state today's
date, are written without importing the readers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

Clock = Callable[[], datetime]  # an aware "now"; tests inject a fixed one


def system_clock() -> datetime:
    return datetime.now(UTC)


def local_now(clock: Clock, zone: tzinfo) -> datetime:
    """The clock's "now" as wall-clock time in `zone`, without a zone (how diary times are kept)."""
    return clock().astimezone(zone).replace(tzinfo=None)


def zone_name(zone: tzinfo) -> str:
    """'Europe/Berlin' for a named zone; the machine's zone by its current abbreviation ('CET')."""
    return str(getattr(zone, "key", None) or datetime.now(zone).tzname() or "local")


def human_date(moment: datetime) -> str:
    """`8 May 2023`: the form people write and ask about."""
    return f"{moment.day} {moment:%B %Y}"
