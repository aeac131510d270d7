"""The calendar libraries' day lists, kept next to the worker's stores between starts.

Building them imports pandas and walks twenty years of sessions: about a second of every
start, most of what a restarted worker spends before it joins its group. The lists depend only
on the libraries' versions, which name the cache file.
"""

from __future__ import annotations

import logging
from datetime import date
from importlib.metadata import version
from pathlib import Path

import orjson

from marketban.domain.calendars import LibraryDays, MarketCalendar, default_calendar, library_days

log = logging.getLogger(__name__)


def cached_calendar(cache_dir: Path, holidays_file: Path | None) -> MarketCalendar:
    """``default_calendar``, with the libraries' days read from ``cache_dir`` when it has them."""
    key = f"{version('exchange_calendars')}-{version('chinesecalendar')}"
    path = cache_dir / f"calendar-days-{key}.json"
    try:
        days = _decode(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        days = library_days()
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".tmp")
            partial.write_bytes(_encode(days))
            partial.replace(path)
        except OSError as exc:  # a read-only data dir costs the second, nothing else
            log.warning("calendar cache not written (%s)", exc)
    return default_calendar(holidays_file, days)


def _encode(days: LibraryDays) -> bytes:
    trading, trading_years, working, working_years = days
    return orjson.dumps(
        {
            "trading": sorted(d.isoformat() for d in trading),
            "trading_years": sorted(trading_years),
            "working": sorted(d.isoformat() for d in working),
            "working_years": sorted(working_years),
        }
    )


def _decode(raw: bytes) -> LibraryDays:
    data = orjson.loads(raw)
    return (
        frozenset(date.fromisoformat(d) for d in data["trading"]),
        frozenset(int(y) for y in data["trading_years"]),
        frozenset(date.fromisoformat(d) for d in data["working"]),
        frozenset(int(y) for y in data["working_years"]),
    )
