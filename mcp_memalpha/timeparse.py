"""Event times: parse what people and models write (ISO-8601, `1:56 pm on 8 May, 2023`,
`2023/05/25 (Thu) 17:08`) into one canonical form that sorts and filters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mcp_memalpha.errors import InvalidArgument

_PARENS = re.compile(r"[()\[\]]")
# Two different defaults: a component the text did not give comes out differently in each.
_DEFAULT_A = datetime(2001, 1, 1)
_DEFAULT_B = datetime(2002, 2, 2)


@dataclass(frozen=True)
class EventTime:
    """A point in time: `iso` is what we store and show, `ts` sorts and filters.

    Times without a zone are kept as written (a diary's local time) and compared as if UTC;
    times with a zone are converted to UTC and shown with a trailing `Z`.
    """

    iso: str
    ts: float


def parse_time(value: str, field: str = "timestamp") -> EventTime:
    """Parse `value` or raise InvalidArgument naming `field`."""
    text = value.strip()
    if not text:
        raise InvalidArgument(field, "is empty; give a date such as 2023-05-08 or '1:56 pm on 8 May, 2023'")
    if len(text) > 100:
        raise InvalidArgument(field, f"is {len(text)} characters long; a date/time is at most 100")
    moment = _parse_iso(text) or _parse_human(text, field)
    return from_datetime(moment)


def from_datetime(moment: datetime) -> EventTime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
        suffix = "Z"
    else:
        suffix = ""
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    ts = moment.replace(tzinfo=UTC).timestamp()
    return EventTime(moment.isoformat(timespec=spec) + suffix, ts)


def from_stored(iso: str) -> EventTime:
    """Rebuild an EventTime from its stored `iso` form (trusted, canonical)."""
    return from_datetime(datetime.fromisoformat(iso.replace("Z", "+00:00")))


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None


def _parse_human(text: str, field: str) -> datetime:
    from dateutil import parser

    cleaned = _PARENS.sub(" ", text)
    try:
        first = parser.parse(cleaned, default=_DEFAULT_A)
        second = parser.parse(cleaned, default=_DEFAULT_B)
    except (ValueError, OverflowError, parser.ParserError) as exc:
        raise InvalidArgument(
            field,
            f"could not read {text!r} as a date/time ({exc}); use ISO-8601 such as 2023-05-08T13:56 "
            "or a form like '1:56 pm on 8 May, 2023'",
        ) from None
    if first.year != second.year:
        raise InvalidArgument(field, f"{text!r} has no year; add one, e.g. '8 May 2023'")
    return first
