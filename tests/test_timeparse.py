"""Event times from ISO-8601 and the forms people and datasets write."""

from __future__ import annotations

import pytest

from mcp_memalpha.errors import InvalidArgument
from mcp_memalpha.timeparse import from_stored, parse_time


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2023-05-08", "2023-05-08T00:00:00"),
        ("2023-05-08T13:56", "2023-05-08T13:56:00"),
        ("2023-05-08T13:56:07.250", "2023-05-08T13:56:07.250000"),
        ("2023-05-08T13:56:00Z", "2023-05-08T13:56:00Z"),
        ("2023-05-08T15:56:00+02:00", "2023-05-08T13:56:00Z"),
        ("1:56 pm on 8 May, 2023", "2023-05-08T13:56:00"),  # LoCoMo session dates
        ("10:37 am on 27 June, 2023", "2023-06-27T10:37:00"),
        ("2023/05/25 (Thu) 17:08", "2023-05-25T17:08:00"),  # LongMemEval headers
        ("May 8, 2023", "2023-05-08T00:00:00"),
        ("8 May 2023 at 9pm", "2023-05-08T21:00:00"),
    ],
)
def test_parses_common_forms(text: str, iso: str) -> None:
    assert parse_time(text).iso == iso


def test_order_and_round_trip() -> None:
    earlier, later = parse_time("1:56 pm on 8 May, 2023"), parse_time("2023-05-08T14:00")
    assert earlier.ts < later.ts
    assert from_stored(earlier.iso) == earlier
    assert from_stored(parse_time("2023-05-08T13:56:00Z").iso).iso == "2023-05-08T13:56:00Z"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("the day after never", "could not read"),
        ("8 May", "has no year"),
        ("Jan 1 -5", "has no year written in full \\(it would be read as 2005\\)"),  # was 2005-01-01
        ("Jan 1 0", "has no year written in full \\(it would be read as 2000\\)"),  # was 2000-01-01
        ("8 May 23", "has no year written in full"),
        ("2023-13-45", "could not read"),
        ("x" * 200, "at most 100"),
    ],
)
def test_bad_times_name_the_field(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason) as error:
        parse_time(text, "start_time")
    assert error.value.field == "start_time"


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        ("I went to the group yesterday!", ["yesterday = 24 May 2023"]),
        ("We ran a charity race last Sunday", ["last sunday = Sunday 21 May 2023"]),
        ("Last Thursday was rainy", ["last thursday = Thursday 18 May 2023"]),  # said on a Thursday
        ("I painted that two years ago", ["two years ago = 2021"]),
        ("3 weeks ago we moved", ["3 weeks ago = 4 May 2023"]),
        ("a few days ago", ["a few days ago = a few days before 25 May 2023"]),
        (
            "last week, and last month, and last year",
            ["last week = the week before 25 May 2023", "last month = April 2023", "last year = 2022"],
        ),
        ("next month we fly; see you tomorrow", ["next month = June 2023", "tomorrow = 26 May 2023"]),
        ("Nothing relative here, on 5 June.", []),
        ("I joined a group last Tues.", ["last tues = Tuesday 23 May 2023"]),
        ("see you next fri or next thurs", ["next fri = Friday 26 May 2023", "next thurs = Thursday 1 June 2023"]),
        ("when I last sat down, last month", ["last month = April 2023"]),  # "sat" is a word, not Saturday
    ],
)
def test_relative_dates_resolve_against_when_they_were_said(text: str, notes: list[str]) -> None:
    from datetime import datetime

    from mcp_memalpha.timeparse import relative_dates

    assert relative_dates(text, datetime(2023, 5, 25, 13, 0)) == notes  # a Thursday


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        ("the day before yesterday", ["the day before yesterday = 23 May 2023"]),
        ("The day after tomorrow", ["the day after tomorrow = 27 May 2023"]),
        ("1,000 days ago", []),
        ("last\nSunday", ["last sunday = Sunday 21 May 2023"]),
    ],
)
def test_relative_date_phrasing_edge_cases(text: str, notes: list[str]) -> None:
    from datetime import datetime

    from mcp_memalpha.timeparse import relative_dates

    assert relative_dates(text, datetime(2023, 5, 25, 13, 0)) == notes
