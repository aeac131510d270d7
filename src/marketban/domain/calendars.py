"""Trading and working days (spec R2, R3).

Trading days come from exchange_calendars ``XSHG`` (the mainland venues share one holiday
schedule); working days from chinese_calendar, which knows the make-up working days (调休).
Both libraries know only published years. Beyond them a day is a trading/working day when it is a
weekday, and the answer is marked estimated; an operator can load published holidays for later
years from a JSON file (see ``load_holidays_file``). Nothing here raises on a date out of range.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path

#: China Standard Time. Asia/Shanghai has been UTC+8 without DST since 1991, so a fixed offset is
#: exact for every date this product sees and much cheaper than a zoneinfo conversion per order.
CST = timezone(timedelta(hours=8), "CST")
#: The close: an order entered at or before this local time on a trading day is for that session.
SESSION_CLOSE = time(15, 0)
_ONE_DAY = timedelta(days=1)
_SCAN_LIMIT = 60  # no gap between trading days comes near this many days


@dataclass(frozen=True, slots=True)
class PublishedYear:
    """A year's published holidays: closed weekdays and weekend make-up working days (调休)."""

    holidays: frozenset[date]
    makeup_workdays: frozenset[date]


@dataclass(frozen=True, slots=True)
class DayResult:
    """A date computed from the calendar, and whether an unpublished year made it a guess."""

    day: date
    estimated: bool


class MarketCalendar:
    """Trading days (XSHG) and Chinese working days, with estimates beyond the published years."""

    def __init__(
        self,
        trading_days: Iterable[date],
        trading_years: Iterable[int],
        working_days: Iterable[date],
        working_years: Iterable[int],
        published: Mapping[int, PublishedYear] | None = None,
    ) -> None:
        self._trading = set(trading_days)
        self._trading_years = set(trading_years)
        self._working = set(working_days)
        self._working_years = set(working_years)
        for year, pub in (published or {}).items():
            # An operator's published list is authoritative for its year, also over the libraries.
            self._trading = {d for d in self._trading if d.year != year}
            self._working = {d for d in self._working if d.year != year}
            day = date(year, 1, 1)
            while day.year == year:
                open_weekday = day.weekday() < 5 and day not in pub.holidays  # noqa: PLR2004
                if open_weekday:
                    self._trading.add(day)
                if open_weekday or day in pub.makeup_workdays:
                    self._working.add(day)
                day += _ONE_DAY
            self._trading_years.add(year)
            self._working_years.add(year)

    def is_trading_day(self, day: date) -> tuple[bool, bool]:
        """Whether ``day`` is an exchange session day, and whether that is an estimate."""
        if day.year in self._trading_years:
            return day in self._trading, False
        return day.weekday() < 5, True  # noqa: PLR2004

    def _is_working(self, day: date) -> tuple[bool, bool]:
        if day.year in self._working_years:
            return day in self._working, False
        return day.weekday() < 5, True  # noqa: PLR2004

    def next_trading_day(self, day: date) -> DayResult:
        """The first trading day strictly after ``day`` (次一交易日)."""
        return self._next(day, trading=True)

    def next_working_day(self, day: date) -> DayResult:
        """The first Chinese working day strictly after ``day`` (次一工作日)."""
        return self._next(day, trading=False)

    @lru_cache(maxsize=8192)  # noqa: B019 - the calendar lives as long as the process
    def _next(self, day: date, *, trading: bool) -> DayResult:
        probe = self.is_trading_day if trading else self._is_working
        estimated = False
        candidate = day
        for _ in range(_SCAN_LIMIT):
            if candidate == date.max:
                # A timestamp in the last days of year 9999 (fuzzing sends them): Python has no
                # later date, and an order must still be decided, not crash the engine.
                return DayResult(date.max, estimated=True)
            candidate += _ONE_DAY
            is_open, guessed = probe(candidate)
            estimated = estimated or guessed
            if is_open:
                return DayResult(candidate, estimated)
        # Unreachable with real calendars; a corrupt holidays file must still not stop the stream.
        return DayResult(day + _ONE_DAY, estimated=True)

    @lru_cache(maxsize=4096)  # noqa: B019 - the calendar lives as long as the process
    def _session_of_day(self, day: date, after_close: bool) -> DayResult:
        is_open, guessed = self.is_trading_day(day)
        if is_open and not after_close:
            return DayResult(day, guessed)
        nxt = self._next(day, trading=True)
        return DayResult(nxt.day, nxt.estimated or guessed)

    @lru_cache(maxsize=65536)  # noqa: B019 - the calendar lives as long as the process
    def sessions_apart(self, a: date, b: date, most: int) -> int:
        """How many trading sessions lie after the earlier of two sessions up to the later one.

        0 for the same session; counted only up to ``most + 1`` (R8 asks "at most W apart", so a
        long gap costs no more than W steps).
        """
        low, high = (a, b) if a <= b else (b, a)
        apart = 0
        day = low
        while day < high and apart <= most:
            day = self._next(day, trading=True).day
            apart += 1
        return apart

    def session_of(self, at: datetime) -> DayResult:
        """The trading session an order entered at ``at`` is for (spec R3).

        At or before 15:00:00 (China time) on a trading day: that day. Later, or on a closed day:
        the next trading day.
        """
        local = at.astimezone(CST)
        return self._session_of_day(local.date(), local.time() > SESSION_CLOSE)


def add_months(start: date, months: int) -> date:
    """The same day ``months`` later; the month's last day when that day does not exist."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    if year > date.max.year:
        return date.max  # a measure that outlasts the calendar lasts as long as it can
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def load_holidays_file(path: Path) -> dict[int, PublishedYear]:
    """Read a published-holidays file (format in docs/rules.md).

    ``{"years": {"2027": {"holidays": [...], "makeup_workdays": [...]}}}``:

    ``holidays`` are weekdays on which the exchanges are closed and people do not work;
    ``makeup_workdays`` are weekend days that are working days (the exchanges stay closed).
    """
    raw = json.loads(path.read_text(encoding="utf-8"))
    years: dict[int, PublishedYear] = {}
    for year_text, entry in raw["years"].items():
        year = int(year_text)
        holidays = frozenset(date.fromisoformat(d) for d in entry.get("holidays", []))
        makeup = frozenset(date.fromisoformat(d) for d in entry.get("makeup_workdays", []))
        wrong_year = [d for d in holidays | makeup if d.year != year]
        if wrong_year:
            raise ValueError(
                f"{path}: dates listed under {year} belong to another year: {wrong_year}"
            )
        years[year] = PublishedYear(holidays, makeup)
    return years


#: Trading days and years, working days and years: what the calendar libraries know.
LibraryDays = tuple[frozenset[date], frozenset[int], frozenset[date], frozenset[int]]


@lru_cache(maxsize=1)
def library_days() -> LibraryDays:
    """The day lists of exchange_calendars (XSHG) and chinese_calendar (a second of pandas)."""
    import chinese_calendar  # noqa: PLC0415 - heavy imports, loaded once on first use
    import exchange_calendars as xcals  # noqa: PLC0415
    from exchange_calendars.exchange_calendar_xshg import XSHGExchangeCalendar  # noqa: PLC0415

    # Explicit bounds: the library's default start is "20 years before today", a wall-clock read.
    end = XSHGExchangeCalendar.bound_max()
    xshg = xcals.get_calendar("XSHG", start="2004-01-02", end=end)
    trading = frozenset(ts.date() for ts in xshg.sessions)
    trading_years = frozenset(range(2004, xshg.last_session.year + 1))
    working: set[date] = set()
    working_years: set[int] = set()
    year = 2004
    while True:
        try:
            chinese_calendar.is_workday(date(year, 1, 1))
        except NotImplementedError:  # how chinese_calendar says it does not know a year
            break
        day = date(year, 1, 1)
        while day.year == year:
            if chinese_calendar.is_workday(day):
                working.add(day)
            day += _ONE_DAY
        working_years.add(year)
        year += 1
    return trading, trading_years, frozenset(working), frozenset(working_years)


def default_calendar(
    holidays_file: Path | None = None, days: LibraryDays | None = None
) -> MarketCalendar:
    """The calendar from the libraries (or their ``days``), plus an operator's published ones."""
    trading, trading_years, working, working_years = days or library_days()
    published = load_holidays_file(holidays_file) if holidays_file else None
    return MarketCalendar(trading, trading_years, working, working_years, published)
