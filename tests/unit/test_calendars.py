"""R2/R3 calendar rules on the real XSHG and chinese_calendar data."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest

from marketban.domain.calendars import add_months, default_calendar

CAL = default_calendar()


@pytest.mark.parametrize(
    ("served", "trading_start", "working_start"),
    [
        (date(2024, 5, 10), date(2024, 5, 13), date(2024, 5, 11)),  # Sat 05-11 is a make-up day
        (date(2024, 9, 30), date(2024, 10, 8), date(2024, 10, 8)),  # National Day gap
        (date(2024, 10, 11), date(2024, 10, 14), date(2024, 10, 12)),  # make-up Saturday works
        (date(2025, 1, 27), date(2025, 2, 5), date(2025, 2, 5)),  # Spring Festival gap
        (date(2025, 1, 25), date(2025, 1, 27), date(2025, 1, 26)),  # make-up Sunday works
    ],
)
def test_r2_measures_start_on_the_next_trading_and_working_day(
    served: date, trading_start: date, working_start: date
) -> None:
    assert CAL.next_trading_day(served).day == trading_start
    assert CAL.next_working_day(served).day == working_start
    assert not CAL.next_trading_day(served).estimated


@pytest.mark.parametrize(
    ("entered_at", "session"),
    [
        ("2024-05-13T09:31:02+08:00", date(2024, 5, 13)),
        ("2024-05-13T15:00:00+08:00", date(2024, 5, 13)),  # at the close: same session
        ("2024-05-13T15:00:00.000001+08:00", date(2024, 5, 14)),  # after it: next
        ("2024-05-13T15:00:01+08:00", date(2024, 5, 14)),
        ("2024-05-13T07:00:00Z", date(2024, 5, 13)),  # 15:00 China time, written in UTC
        ("2024-05-13T07:00:01Z", date(2024, 5, 14)),
        ("2024-05-11T10:00:00+08:00", date(2024, 5, 13)),  # Saturday
        ("2024-10-01T10:00:00+08:00", date(2024, 10, 8)),  # holiday
        ("2024-09-30T15:00:01+08:00", date(2024, 10, 8)),  # after the close before a holiday
        ("2024-05-12T23:30:00-01:00", date(2024, 5, 13)),  # 08:30 CST on Monday 05-13
    ],
)
def test_r3_session_of_an_order(entered_at: str, session: date) -> None:
    assert CAL.session_of(datetime.fromisoformat(entered_at)).day == session


def test_the_last_known_day_leads_into_an_estimated_year() -> None:
    result = CAL.next_trading_day(date(2026, 12, 31))
    assert result.day == date(2027, 1, 1)  # a Friday: weekdays stand in for trading days
    assert result.estimated


@pytest.mark.parametrize("day", [date(2027, 6, 5), date(2060, 1, 1), date(9998, 12, 30)])
def test_dates_beyond_the_calendars_never_raise(day: date) -> None:
    result = CAL.next_trading_day(day)
    assert result.estimated
    assert result.day.weekday() < 5
    assert CAL.next_working_day(day).estimated


def test_published_holidays_file_makes_a_later_year_known(tmp_path: Path) -> None:
    path = tmp_path / "holidays.json"
    path.write_text(
        json.dumps(
            {"years": {"2027": {"holidays": ["2027-01-01"], "makeup_workdays": ["2027-01-02"]}}}
        )
    )
    cal = default_calendar(path)
    trading = cal.next_trading_day(date(2026, 12, 31))
    assert trading.day == date(2027, 1, 4)  # New Year's Day closed; Saturday make-up: no session
    assert not trading.estimated
    working = cal.next_working_day(date(2026, 12, 31))
    assert working.day == date(2027, 1, 2)
    assert not working.estimated


def test_a_holidays_file_with_dates_of_another_year_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "holidays.json"
    path.write_text(json.dumps({"years": {"2027": {"holidays": ["2028-01-01"]}}}))
    with pytest.raises(ValueError, match="another year"):
        default_calendar(path)


@pytest.mark.parametrize(
    ("start", "months", "anniversary"),
    [
        (date(2024, 5, 13), 60, date(2029, 5, 13)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),  # no Feb 29: the month's last day
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2024, 11, 30), 3, date(2025, 2, 28)),
        (date(2024, 12, 15), 1, date(2025, 1, 15)),
    ],
)
def test_add_months(start: date, months: int, anniversary: date) -> None:
    assert add_months(start, months) == anniversary


@pytest.mark.parametrize(
    "entered_at", ["9999-12-31T23:59:59+14:00", "9999-12-31T16:00:00+08:00", "9999-12-30T20:00:00Z"]
)
def test_an_order_at_the_end_of_year_9999_gets_a_session_instead_of_an_overflow(
    entered_at: str,
) -> None:
    result = CAL.session_of(datetime.fromisoformat(entered_at))
    assert result.day == date.max
    assert result.estimated


def test_a_measure_outlasting_year_9999_ends_on_the_last_date() -> None:
    assert add_months(date(9998, 6, 1), 5 * 12) == date.max
    assert add_months(date(2024, 5, 13), 12) == date(2025, 5, 13)
