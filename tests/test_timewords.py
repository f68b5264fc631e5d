"""Times in words, read against a fixed clock in two zones where the date differs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.clock import local_now
from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.timewords import ACCEPTED_FORMS, find_in_query, read_when

# Tuesday 1 December 2026, 03:30 in UTC; still Monday 30 November, 22:30, in New York.
CLOCK = datetime(2026, 12, 1, 3, 30, tzinfo=UTC)
UTC_NOW = local_now(lambda: CLOCK, ZoneInfo("UTC"))
NY_NOW = local_now(lambda: CLOCK, ZoneInfo("America/New_York"))
END = "T23:59:59.999999"

Expected = tuple[str, str, str]  # start, end, at (ISO)


def day(d: str) -> Expected:
    return f"{d}T00:00:00", f"{d}{END}", f"{d}T00:00:00"


def days(first: str, last: str, at: str | None = None) -> Expected:
    return f"{first}T00:00:00", f"{last}{END}", f"{at or first}T00:00:00"


def hours(d: str, begin: int, end: int) -> Expected:
    finish = f"{d}{END}" if end == 24 else f"{d}T{end - 1:02d}:59:59.999999"
    return f"{d}T{begin:02d}:00:00", finish, f"{d}T{begin:02d}:00:00"


def point(moment: str) -> Expected:
    return moment, moment, moment


def month(year: int, number: int, at: str | None = None) -> Expected:
    last = (date(year + number // 12, number % 12 + 1, 1) - timedelta(days=1)).isoformat()
    first = f"{year}-{number:02d}-01"
    return f"{first}T00:00:00", f"{last}{END}", f"{at or first}T00:00:00"


def since(first: str, now: str) -> Expected:
    return f"{first}T00:00:00", now, f"{first}T00:00:00"


# form -> (in UTC, in America/New_York)
CASES: dict[str, tuple[Expected, Expected]] = {
    "now": (point("2026-12-01T03:30:00"), point("2026-11-30T22:30:00")),
    "just now": (point("2026-12-01T03:30:00"), point("2026-11-30T22:30:00")),
    "today": (day("2026-12-01"), day("2026-11-30")),
    "yesterday": (day("2026-11-30"), day("2026-11-29")),
    "tomorrow": (day("2026-12-02"), day("2026-12-01")),
    "the day before yesterday": (day("2026-11-29"), day("2026-11-28")),
    "the day after tomorrow": (day("2026-12-03"), day("2026-12-02")),
    "this morning": (hours("2026-12-01", 6, 12), hours("2026-11-30", 6, 12)),
    "this afternoon": (hours("2026-12-01", 12, 18), hours("2026-11-30", 12, 18)),
    "this evening": (hours("2026-12-01", 18, 24), hours("2026-11-30", 18, 24)),
    "tonight": (hours("2026-12-01", 18, 24), hours("2026-11-30", 18, 24)),
    "last night": (hours("2026-11-30", 18, 24), hours("2026-11-29", 18, 24)),
    "yesterday morning": (hours("2026-11-30", 6, 12), hours("2026-11-29", 6, 12)),
    "tomorrow evening": (hours("2026-12-02", 18, 24), hours("2026-12-01", 18, 24)),
    "two days ago": (day("2026-11-29"), day("2026-11-28")),
    "a couple of days ago": (day("2026-11-29"), day("2026-11-28")),
    "3 weeks ago": (days("2026-11-09", "2026-11-15", "2026-11-10"), days("2026-11-09", "2026-11-15")),
    "2 months ago": (month(2026, 10), month(2026, 9, "2026-09-30")),
    "five years ago": (
        ("2021-01-01T00:00:00", f"2021-12-31{END}", "2021-12-01T00:00:00"),
        ("2021-01-01T00:00:00", f"2021-12-31{END}", "2021-11-30T00:00:00"),
    ),
    "an hour ago": (point("2026-12-01T02:30:00"), point("2026-11-30T21:30:00")),
    "30 minutes ago": (point("2026-12-01T03:00:00"), point("2026-11-30T22:00:00")),
    "in two days": (day("2026-12-03"), day("2026-12-02")),
    "in three weeks": (days("2026-12-21", "2026-12-27", "2026-12-22"), days("2026-12-21", "2026-12-27")),
    "the past 7 days": (since("2026-11-24", "2026-12-01T03:30:00"), since("2026-11-23", "2026-11-30T22:30:00")),
    "the last 3 days": (since("2026-11-28", "2026-12-01T03:30:00"), since("2026-11-27", "2026-11-30T22:30:00")),
    "the past week": (since("2026-11-24", "2026-12-01T03:30:00"), since("2026-11-23", "2026-11-30T22:30:00")),
    "last week": (days("2026-11-23", "2026-11-29"), days("2026-11-23", "2026-11-29")),
    "this week": (days("2026-11-30", "2026-12-06"), days("2026-11-30", "2026-12-06")),
    "next week": (days("2026-12-07", "2026-12-13"), days("2026-12-07", "2026-12-13")),
    "last weekend": (days("2026-11-28", "2026-11-29"), days("2026-11-28", "2026-11-29")),
    "this weekend": (days("2026-12-05", "2026-12-06"), days("2026-12-05", "2026-12-06")),
    "last month": (month(2026, 11), month(2026, 10)),
    "next month": (month(2027, 1), month(2026, 12)),
    "this year": (
        ("2026-01-01T00:00:00", f"2026-12-31{END}", "2026-01-01T00:00:00"),
        ("2026-01-01T00:00:00", f"2026-12-31{END}", "2026-01-01T00:00:00"),
    ),
    "last year": (
        ("2025-01-01T00:00:00", f"2025-12-31{END}", "2025-01-01T00:00:00"),
        ("2025-01-01T00:00:00", f"2025-12-31{END}", "2025-01-01T00:00:00"),
    ),
    "last Tuesday": (day("2026-11-24"), day("2026-11-24")),  # said on a Tuesday: a week back
    "last Sunday": (day("2026-11-29"), day("2026-11-29")),
    "this Friday": (day("2026-12-04"), day("2026-12-04")),
    "next Friday": (day("2026-12-04"), day("2026-12-04")),
    "on Monday": (day("2026-11-30"), day("2026-11-30")),  # said on a Monday in New York: that day
    "Sunday": (day("2026-11-29"), day("2026-11-29")),
    "in May": (month(2026, 5), month(2026, 5)),
    "March": (month(2026, 3), month(2026, 3)),
    "in December": (month(2026, 12), month(2025, 12)),  # not yet December in New York
    "May 2023": (month(2023, 5), month(2023, 5)),
    "in Sept 2024": (month(2024, 9), month(2024, 9)),
    "in 2023": (
        ("2023-01-01T00:00:00", f"2023-12-31{END}", "2023-01-01T00:00:00"),
        ("2023-01-01T00:00:00", f"2023-12-31{END}", "2023-01-01T00:00:00"),
    ),
}


def _read(form: str, now: datetime) -> Expected:
    span = read_when(form, "start_time", now)
    return span.start.iso, span.end.iso, span.at.iso


@pytest.mark.parametrize("form", list(CASES))
def test_every_form_in_two_zones(form: str) -> None:
    in_utc, in_new_york = CASES[form]
    assert _read(form, UTC_NOW) == in_utc
    assert _read(form, NY_NOW) == in_new_york
    assert _read(f"  {form.upper()} ", UTC_NOW) == in_utc  # any case and spacing


def test_every_listed_form_is_in_the_table() -> None:
    table = {form.lower() for form in CASES}
    assert {form.lower() for form in ACCEPTED_FORMS} <= table


def test_absolute_times_still_read_as_before() -> None:
    span = read_when("2023-05-08", "end_time", UTC_NOW)
    assert (span.start.iso, span.end.iso) == ("2023-05-08T00:00:00", "2023-05-08T00:00:00")
    assert span.end.ts - span.start.ts == pytest.approx(86399.999999)  # a bare date: the whole day
    assert read_when("1:56 pm on 8 May, 2023", "timestamp", UTC_NOW).at.iso == "2023-05-08T13:56:00"


@pytest.mark.parametrize("bad", ["last blursday", "3 parsecs ago", "next fortnight", "yesterdayish", "in Maytime"])
@pytest.mark.parametrize("field", ["timestamp", "start_time", "end_time"])
def test_bad_forms_are_refused_naming_the_field_and_the_forms(bad: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        read_when(bad, field, UTC_NOW)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")
    for form in ("'yesterday'", "'last week'", "'in May'", "'two days ago'", "'this morning'"):
        assert form in str(refused.value)


@pytest.mark.parametrize(
    ("query", "phrase", "start"),
    [
        ("what did I buy last month?", "last month", "2026-11-01T00:00:00"),
        ("Where was I on Sunday", "on sunday", "2026-11-29T00:00:00"),
        ("what happened in May 2023?", "in may 2023", "2023-05-01T00:00:00"),
        ("who did I meet two days ago", "two days ago", "2026-11-29T00:00:00"),
    ],
)
def test_a_query_that_speaks_of_a_time(query: str, phrase: str, start: str) -> None:
    span = find_in_query(query, UTC_NOW)
    assert span is not None and (span.phrase, span.start.iso) == (phrase, start)


@pytest.mark.parametrize("query", ["May I bring my dog?", "What is Sunday's favourite food?", "where do I work"])
def test_words_that_are_not_times_in_a_query(query: str) -> None:
    assert find_in_query(query, UTC_NOW) is None


@pytest.fixture
def new_york(tmp_path: Path) -> Memory:
    settings = Settings(data_dir=tmp_path / "data", time_zone="America/New_York")
    return Memory(settings, clock=lambda: CLOCK).open()


def test_insert_and_search_in_words(new_york: Memory) -> None:
    ctx = CallContext()
    with new_york as memory:
        walk = memory.insert(ctx, "episodic", "Walked the dog along the river", timestamp="yesterday")
        assert walk.event_time == "2026-11-29T00:00:00"  # the client's yesterday, not the server's (UTC)
        memory.insert(ctx, "episodic", "Walked the dog in the park", timestamp="2026-10-10")
        found = memory.search(ctx, "walked the dog", start_time="last week", end_time="last week")
        assert [hit.item.id for hit in found.hits] == [walk.id]
        assert found.start is not None and found.start.start.iso == "2026-11-23T00:00:00"
        assert found.end is not None and found.end.end.iso == "2026-11-29" + END


def test_a_time_in_the_query_is_a_prior_not_a_filter(new_york: Memory) -> None:
    ctx = CallContext()
    with new_york as memory:
        old = memory.insert(ctx, "episodic", "Bought new running shoes and running socks", "2026-03-02")
        recent = memory.insert(ctx, "episodic", "Bought a running jacket", "2026-10-20")
        memory.insert(ctx, "episodic", "Painted the kitchen", "2026-10-21")
        plain = memory.search(ctx, "what running gear did I buy?")
        assert plain.hits[0].item.id == old.id and plain.prior is None
        dated = memory.search(ctx, "what running gear did I buy last month?")
        assert [hit.item.id for hit in dated.hits][:2] == [recent.id, old.id]  # last month first; the rest kept
        assert dated.prior is not None and dated.prior.phrase == "last month"
        assert dated.prior.start.iso == "2026-10-01T00:00:00"  # November has not ended in New York


def test_zone_setting_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="time_zone"):
        Settings(data_dir=tmp_path, time_zone="Mars/Olympus")


def test_the_server_tells_clients_today_in_the_users_zone(tmp_path: Path) -> None:
    from mcp_memalpha.clock import human_date, system_clock
    from mcp_memalpha.server import instructions

    text = instructions(Settings(data_dir=tmp_path, time_zone="Pacific/Kiritimati"))
    today = local_now(system_clock, ZoneInfo("Pacific/Kiritimati"))
    assert f"Today is {today:%A} {human_date(today)} (Pacific/Kiritimati)" in text
