"""Time in words: "yesterday", "last Tuesday", "in May", "two days ago", "this morning".

Read against a clock in the client's zone (`Settings.time_zone`, default the machine's), so the
same words give the same range for the same moment. Every form resolves to a `Span`: the range
it names (start and end, both inclusive) and the moment a `timestamp` takes (`at`). Times are
the client's local wall-clock time without a zone, as a diary writes them (see `timeparse`).

`read_when` takes a whole argument (a time field); `find_in_query` finds the first time
expression inside a question ("what did I buy last month?"), where a bare "May" or "Sunday" is
not read as a date: a question must say "in May" or "on Sunday".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.timeparse import _COUNT, _NUMBERS, _WEEKDAYS, EventTime, from_datetime, parse_time

# The accepted forms, as the README table and every refusal list them.
ACCEPTED_FORMS = (
    "now",
    "today",
    "yesterday",
    "tomorrow",
    "the day before yesterday",
    "the day after tomorrow",
    "this morning",
    "this afternoon",
    "this evening",
    "tonight",
    "last night",
    "yesterday morning",
    "tomorrow evening",
    "two days ago",
    "3 weeks ago",
    "an hour ago",
    "in two days",
    "the past 7 days",
    "last week",
    "this week",
    "next week",
    "last weekend",
    "last month",
    "this year",
    "last Tuesday",
    "next Friday",
    "on Monday",
    "in May",
    "May 2023",
    "in 2023",
)
FORMS_HINT = "or in words: " + ", ".join(f"'{form}'" for form in ACCEPTED_FORMS)

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_MONTH_WORDS = r"|".join(
    [*_MONTHS, "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sept", "sep", "oct", "nov", "dec"]
)
_WEEKDAY_WORDS = "|".join(_WEEKDAYS)
_PARTS = {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24), "night": (18, 24)}
_DAYS = {
    "the day before yesterday": -2,
    "the day after tomorrow": 2,
    "yesterday": -1,
    "today": 0,
    "tomorrow": 1,
}


def _grammar(month_prefix: str, weekday_prefix: str) -> re.Pattern[str]:
    """The alternatives, longest first (Python takes the first that matches at a position)."""
    return re.compile(
        r"\b(?:"
        r"(?P<now>right now|just now|now)"
        r"|(?P<night>tonight|last night)"
        r"|(?P<partday>this|yesterday|tomorrow|today)\s+(?P<part>morning|afternoon|evening|night)"
        r"|(?P<day>the day before yesterday|the day after tomorrow|yesterday|today|tomorrow)"
        rf"|(?<![\d,.])(?P<count>{_COUNT})\s+(?P<unit>minute|hour|day|week|month|year)s?\s+ago"
        rf"|in\s+(?P<ahead>{_COUNT})\s+(?P<ahead_unit>day|week|month|year)s?"
        rf"|(?:in\s+)?(?:the\s+)?(?:past|last)\s+(?P<past>{_COUNT}\s+)?(?P<past_unit>day|week|month|year)s"
        r"|(?:in\s+|over\s+)?the\s+past\s+(?P<past_one>day|week|month|year)"
        rf"|(?P<dir>last|this|next)\s+(?P<span>weekend|week|month|year|{_WEEKDAY_WORDS})"
        rf"|{weekday_prefix}(?P<weekday>{_WEEKDAY_WORDS})"
        rf"|(?:in\s+)?(?P<month_year>{_MONTH_WORDS})\s+(?P<year>\d{{4}})"
        rf"|{month_prefix}(?P<month>{_MONTH_WORDS})"
        r"|in\s+(?P<year_only>\d{4})"
        r")\b",
        re.IGNORECASE,
    )


_FIELD = _grammar(r"(?:in\s+)?", r"(?:on\s+)?")
_QUERY = _grammar(r"in\s+", r"on\s+")


@dataclass(frozen=True)
class Span:
    """A time range named in words (or an absolute time, as a range of one instant or one day)."""

    phrase: str  # as read, lower case
    start: EventTime
    end: EventTime  # inclusive
    at: EventTime  # the moment a timestamp written with these words takes


def read_when(value: str, field: str, now: datetime) -> Span:
    """A time argument: words (`ACCEPTED_FORMS`) read against `now`, else an absolute date/time
    (`timeparse.parse_time`). Refusals name `field` and list the forms accepted."""
    text = " ".join(value.split())
    match = _FIELD.fullmatch(text)
    if match is not None:
        return _span(match, now)
    try:
        moment = parse_time(value, field)
    except InvalidArgument as exc:
        raise InvalidArgument(field, f"{exc.reason}; {FORMS_HINT}") from None
    end = moment
    if moment.date_only:  # a bare date as a range means the whole of that day
        end = EventTime(moment.iso, moment.ts + 86399.999999, True)
    return Span(text.lower(), moment, end, moment)


def find_in_query(query: str, now: datetime) -> Span | None:
    """The first time expression in a question, read against `now`; None when it names none."""
    for match in _QUERY.finditer(query):
        try:
            return _span(match, now)
        except InvalidArgument:  # out of range (year 1 or 9999): not a usable time
            continue
    return None


def _span(match: re.Match[str], now: datetime) -> Span:
    phrase = " ".join(match.group(0).lower().split())
    try:
        start, end, at, date_only = _resolve(match, now)
        return Span(phrase, from_datetime(start), from_datetime(end), from_datetime(at, date_only))
    except (OverflowError, ValueError):
        raise InvalidArgument("time", f"{phrase!r} is out of the supported range (years 1 to 9999)") from None


_Range = tuple[datetime, datetime, datetime, bool]  # start, end (inclusive), at, at is a date
_TICK = timedelta(microseconds=1)


def _resolve(match: re.Match[str], now: datetime) -> _Range:
    g = match.groupdict()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if g["now"]:
        return now, now, now, False
    if g["night"]:
        night = today if g["night"].lower() == "tonight" else today - timedelta(days=1)
        return _part(night, "night")
    if g["partday"]:
        shift = {"this": 0, "today": 0, "yesterday": -1, "tomorrow": 1}[g["partday"].lower()]
        return _part(today + timedelta(days=shift), g["part"].lower())
    if g["day"]:
        return _days(today + timedelta(days=_DAYS[" ".join(g["day"].lower().split())]), 1)
    if g["count"]:
        return _ago(now, today, -_count(g["count"]), g["unit"].lower())
    if g["ahead"]:
        return _ago(now, today, _count(g["ahead"]), g["ahead_unit"].lower())
    if g["past_unit"] or g["past_one"]:
        count = _count(g["past"].strip()) if g["past"] else 1
        start = _shift(today, g["past_unit"] or g["past_one"], -count)
        return start, now, start, True
    if g["dir"]:
        return _relative(today, g["dir"].lower(), g["span"].lower())
    if g["weekday"]:
        return _days(today - timedelta(days=(today.weekday() - _weekday(g["weekday"])) % 7), 1)
    if g["month_year"]:
        return _month(int(g["year"]), _month_number(g["month_year"]))
    if g["month"]:
        number = _month_number(g["month"])
        return _month(today.year if number <= today.month else today.year - 1, number)
    year = int(g["year_only"])
    return _year(year)


def _count(text: str) -> int:
    text = " ".join(text.lower().split())
    return int(text) if text.isdigit() else _NUMBERS[text]


def _weekday(name: str) -> int:
    return _WEEKDAYS.index(name.lower())


def _month_number(name: str) -> int:
    prefix = name.lower()[:3]
    return next(i for i, month in enumerate(_MONTHS, 1) if month.startswith(prefix))


def _days(first: datetime, count: int) -> _Range:
    return first, first + timedelta(days=count) - _TICK, first, True


def _part(day: datetime, part: str) -> _Range:
    begin, finish = _PARTS[part]
    start = day + timedelta(hours=begin)
    return start, day + timedelta(hours=finish) - _TICK, start, False


def _shift(moment: datetime, unit: str, count: int) -> datetime:
    from dateutil.relativedelta import relativedelta

    return moment + relativedelta(**{f"{unit.lower()}s": count})  # type: ignore[arg-type]


def _ago(now: datetime, today: datetime, count: int, unit: str) -> _Range:
    """`count` units from now (negative: ago): a minute or an hour is a moment; a day that day;
    a week, month or year the calendar week (Monday to Sunday), month or year it falls in."""
    if unit in ("minute", "hour"):
        moment = _shift(now, unit, count)
        return moment, moment, moment, False
    day = _shift(today, unit, count)
    if unit == "day":
        return _days(day, 1)
    if unit == "week":
        start, end, _, _ = _days(day - timedelta(days=day.weekday()), 7)
    elif unit == "month":
        start, end, _, _ = _month(day.year, day.month)
    else:
        start, end, _, _ = _year(day.year)
    return start, end, day, True


def _relative(today: datetime, direction: str, span: str) -> _Range:
    step = {"last": -1, "this": 0, "next": 1}[direction]
    monday = today - timedelta(days=today.weekday())
    if span == "week":
        return _days(monday + timedelta(weeks=step), 7)
    if span == "weekend":
        return _days(monday + timedelta(weeks=step, days=5), 2)
    if span == "month":
        first = _shift(today.replace(day=1), "month", step)
        return _month(first.year, first.month)
    if span == "year":
        return _year(today.year + step)
    target = _weekday(span)
    if step == 0:  # the one in this Monday-to-Sunday week
        return _days(monday + timedelta(days=target), 1)
    # "last Tuesday" said on a Tuesday is a week back, never the same day (as `timeparse` reads it).
    distance = (today.weekday() - target) % 7 if step < 0 else (target - today.weekday()) % 7
    return _days(today + timedelta(days=step * (distance or 7)), 1)


def _month(year: int, month: int) -> _Range:
    first = datetime(year, month, 1)
    following = datetime(year + 1, 1, 1) if month == 12 else datetime(year, month + 1, 1)
    return first, following - _TICK, first, True


def _year(year: int) -> _Range:
    first = datetime(year, 1, 1)
    return first, datetime(year, 12, 31, 23, 59, 59, 999999), first, True
