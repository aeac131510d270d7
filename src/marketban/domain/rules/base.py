"""What every rule of the engine shares: the engine's parts, and who an order is decided for."""

from __future__ import annotations

from dataclasses import dataclass

from marketban.domain.bans import Window
from marketban.domain.calendars import MarketCalendar
from marketban.domain.proxy import ProxyConfig
from marketban.domain.state import State


@dataclass(frozen=True, slots=True)
class Measures:
    """Who an order of an account is decided for, and the trading windows that apply."""

    person_id: str | None  # the person the decision names
    persons: list[str]  # owner and controllers
    windows: list[Window]  # every window that applies, owner's and controllers'
    owner_windows: list[Window]
    via: list[str]  # the controlled links some of the windows come through, described
    banned: dict[str, list[str]]  # person -> the decisions whose windows apply


class RuleBase:
    """The parts of the engine (``marketban.domain.engine.Engine``) its rules use."""

    calendar: MarketCalendar
    state: State
    proxy: ProxyConfig
