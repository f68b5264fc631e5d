"""Event times: parse what people and models write (ISO-8601, `1:56 pm on 8 May, 2023`,
`2023/05/25 (Thu) 17:08`) into one canonical form that sorts and filters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mcp_memalpha.clock import human_date
from mcp_memalpha.errors import InvalidArgument

_PARENS = re.compile(r"[()\[\]]")
_DIGITS = re.compile(r"\d+")
# Two different defaults: a component the text did not give comes out differently in each.
_DEFAULT_A = datetime(2001, 1, 1, 0, 0)
_DEFAULT_B = datetime(2002, 2, 2, 1, 1)
_HINT = "use ISO-8601 such as 2023-05-08T13:56 or a form like '1:56 pm on 8 May, 2023'"


@dataclass(frozen=True)
class EventTime:
    """A point in time: `iso` is what we store and show, `ts` sorts and filters.

    Times without a zone are kept as written (a diary's local time) and compared as if UTC;
    times with a zone are converted to UTC and shown with a trailing `Z`.
    """

    iso: str
    ts: float
    date_only: bool = False  # no time of day was given ("8 May 2023")


def parse_time(value: str, field: str = "timestamp") -> EventTime:
    """Parse `value` or raise InvalidArgument naming `field`."""
    text = value.strip()
    if not text:
        raise InvalidArgument(field, "is empty; give a date such as 2023-05-08 or '1:56 pm on 8 May, 2023'")
    if len(text) > 100:
        raise InvalidArgument(field, f"is {len(text)} characters long; a date/time is at most 100")
    iso = _parse_iso(text)
    moment, date_only = (iso, len(text) <= 10) if iso is not None else _parse_human(text, field)
    try:
        return from_datetime(moment, date_only)
    except (OverflowError, ValueError):
        raise InvalidArgument(field, f"{text!r} is out of the supported range (years 1 to 9999 in UTC)") from None


def from_datetime(moment: datetime, date_only: bool = False) -> EventTime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
        suffix = "Z"
    else:
        suffix = ""
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    ts = moment.replace(tzinfo=UTC).timestamp()
    return EventTime(moment.isoformat(timespec=spec) + suffix, ts, date_only)


def from_stored(iso: str, field: str = "event_time") -> EventTime:
    """Rebuild an EventTime from its stored ISO form; raises InvalidArgument if it is not one."""
    try:
        return from_datetime(datetime.fromisoformat(iso.replace("Z", "+00:00")))
    except (OverflowError, ValueError, AttributeError):
        raise InvalidArgument(field, f"{iso!r} is not an ISO-8601 date/time") from None


def _parse_iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None


def _parse_human(text: str, field: str) -> tuple[datetime, bool]:
    from dateutil import parser

    cleaned = _PARENS.sub(" ", text)
    try:
        first = parser.parse(cleaned, default=_DEFAULT_A)
        second = parser.parse(cleaned, default=_DEFAULT_B)
    except (ValueError, OverflowError, parser.ParserError) as exc:
        raise InvalidArgument(field, f"could not read {text!r} as a date/time ({exc}); {_HINT}") from None
    if first.year != second.year:
        raise InvalidArgument(field, f"{text!r} has no year; add one, e.g. '8 May 2023'")
    # dateutil reads a year of one or two digits, or a stray '-5', as one in this century
    # ("Jan 1 -5" is 2005, "Jan 1 0" is 2000): only a year written out (3 or more digits) is read.
    if first.year not in {int(digits) for digits in _DIGITS.findall(text) if len(digits) >= 3}:
        raise InvalidArgument(
            field, f"{text!r} has no year written in full (it would be read as {first.year}); {_HINT}"
        )
    return first, first.hour != second.hour


# ---- reading dates back to people ------------------------------------------------------------

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# "last Tues", "next Fri": not "sat" or "sun", which are also words ("when I last sat down").
_WEEKDAY_ABBREVIATIONS = r"mon|tues?|wed|thu(?:rs?)?|fri"
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "a couple of": 2,
    "couple of": 2,
    "a few": 3,
    "few": 3,
}
_COUNT = r"(\d{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|(?:a )?couple of|(?:a )?few)"
_DAY_OFFSETS = {
    "the day before yesterday": -2,
    "the day after tomorrow": 2,
    "yesterday": -1,
    "last night": -1,
    "tomorrow": 1,
}
_RELATIVE = re.compile(
    r"\b(?:(?P<day>the day before yesterday|the day after tomorrow|yesterday|last night|tomorrow)"
    rf"|(?<![\d,.])(?P<count>{_COUNT})\s+(?P<unit>day|week|month|year)s?\s+ago"
    r"|(?P<dir>last|next)\s+(?P<span>week(?:end)?|month|year|"
    + "|".join(_WEEKDAYS)
    + "|"
    + _WEEKDAY_ABBREVIATIONS
    + r"))\b",
    re.IGNORECASE,
)


def relative_dates(text: str, anchor: datetime) -> list[str]:
    """Resolve relative dates in `text` against the time it was said, e.g. `yesterday = 7 May 2023`.

    A turn saying "I went yesterday" answers "when did she go?" only once "yesterday" is read
    against the turn's own date; readers and keyword search both need the absolute date.
    """
    notes: list[str] = []
    for match in _RELATIVE.finditer(text):
        try:
            resolved = _resolve(match, anchor)
        except (OverflowError, ValueError):  # beyond year 1 or 9999: say nothing rather than fail
            continue
        note = f"{' '.join(match.group(0).lower().split())} = {resolved}"
        if resolved and note not in notes:
            notes.append(note)
    return notes


def _resolve(match: re.Match[str], anchor: datetime) -> str:
    from dateutil.relativedelta import relativedelta

    said = human_date(anchor)
    if day := match.group("day"):
        return human_date(anchor + timedelta(days=_DAY_OFFSETS[" ".join(day.lower().split())]))
    if match.group("count"):
        count_text = match.group("count").lower()
        count = int(count_text) if count_text.isdigit() else _NUMBERS[count_text]
        unit = match.group("unit").lower()
        if count_text in ("a few", "few", "a couple of", "couple of"):
            return f"{count_text} {unit}s before {said}"
        moment = anchor - relativedelta(**{f"{unit}s": count})  # type: ignore[arg-type]
        return str(moment.year) if unit == "year" else f"{moment:%B %Y}" if unit == "month" else human_date(moment)
    direction, span = match.group("dir").lower(), match.group("span").lower()
    step = -1 if direction == "last" else 1
    if span in ("week", "weekend"):
        return f"the {span} {'before' if step < 0 else 'after'} {said}"
    if span == "month":
        return f"{anchor + relativedelta(months=step):%B %Y}"
    if span == "year":
        return str(anchor.year + step)
    target = next(i for i, day in enumerate(_WEEKDAYS) if day.startswith(span[:3]))
    # "last Sunday" said on a Sunday is a week back, never the same day.
    distance = (anchor.weekday() - target) % 7 if step < 0 else (target - anchor.weekday()) % 7
    moment = anchor + timedelta(days=step * (distance or 7))
    return f"{_WEEKDAYS[target].capitalize()} {human_date(moment)}"
