"""The worker's calendar cache: the same calendar, without the libraries on the second start."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from marketban.adapters import calendar_cache
from marketban.domain.calendars import default_calendar


def test_a_cached_calendar_is_the_libraries_calendar_and_skips_them_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = calendar_cache.cached_calendar(tmp_path, None)
    reference = default_calendar()
    for day in (date(2024, 10, 1), date(2024, 10, 8), date(2024, 2, 10), date(2024, 2, 18)):
        assert first.is_trading_day(day) == reference.is_trading_day(day)
        assert first.next_working_day(day) == reference.next_working_day(day)

    def no_libraries() -> None:
        raise AssertionError("the libraries were asked again")

    monkeypatch.setattr(calendar_cache, "library_days", no_libraries)
    second = calendar_cache.cached_calendar(tmp_path, None)
    assert second.next_trading_day(date(2024, 9, 30)) == reference.next_trading_day(
        date(2024, 9, 30)
    )


def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path) -> None:
    calendar_cache.cached_calendar(tmp_path, None)
    (cached,) = tmp_path.glob("calendar-days-*.json")
    cached.write_bytes(b"{not json")
    again = calendar_cache.cached_calendar(tmp_path, None)
    assert again.is_trading_day(date(2024, 10, 8)) == (True, False)
    assert cached.read_bytes().startswith(b'{"trading"')
