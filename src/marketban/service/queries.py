"""What the query API answers, computed from the engine's state: pure functions and their models.

The web layer (``marketban.adapters.api``) parses a request, calls one of these with the worker's
tables and views, and writes the returned model as JSON. Nothing here reads the clock: the caller
passes the day it asks about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from marketban.domain.bans import BanChange, BanView, BanWindows, Window
from marketban.domain.engine import AccountState, Controllers
from marketban.domain.models import AccountLink, Decision, Measure

T = TypeVar("T")

#: The most items one page of a listing holds.
MAX_PAGE = 500


class Page(BaseModel, Generic[T]):
    """One page of a listing: ``items`` from ``offset``, of ``total`` matching."""

    items: list[T]
    total: int
    offset: int
    limit: int


class ApiError(BaseModel):
    """Every error response: what went wrong, in a sentence a person can act on."""

    error: str
    status: int


class MeasureNow(Window):
    """One measure window of a person that applies now or later (``end``: first free day)."""

    status: Literal["active", "upcoming"]


class Quota(BaseModel):
    """What an exemption still allows: evidence (6.1-6.5, 6.7) or pre-ban holdings (6.6)."""

    clause: str
    evidence_id: str | None
    security: str | None
    side: Literal["buy", "sell"]
    limit: int = Field(description="max_quantity of the evidence, or the pre-ban holding")
    used: int
    reserved: int = Field(description="held by open orders of the session asked about")
    remaining: int
    valid_from: date | None = None
    valid_until: date | None = None
    revoked: bool = False


class ControllerView(BaseModel):
    """A person an analyst confirmed controls the account (R8), and on what ground."""

    person_id: str
    reference: str | None
    confirmed_by: str | None
    trading_measure_on_session: bool


class AccountView(BaseModel):
    """``GET /api/accounts/{account_id}``: who owns it, who controls it, what restricts it."""

    account_id: str
    kind: Literal["cash", "credit"] | None
    person_id: str | None
    as_of: date
    session: date
    measures: list[MeasureNow]
    decision_ids: list[str]
    quotas: list[Quota]
    tracked_orders: int
    controllers: list[ControllerView] = []


class RegisterEntry(BaseModel):
    """One decision in the public ban register (Art. 13)."""

    decision_id: str
    version: int
    person_id: str | None
    person_name: str | None
    issuer: str | None
    served_on: date | None
    revoked_on: date | None
    measures: list[Measure]
    windows: list[Window]


class RegisterDetail(RegisterEntry):
    """``GET /api/bans/{decision_id}``: the entry with every version applied."""

    history: list[BanChange]


class BansQuery(BaseModel):
    """Query parameters of ``GET /api/bans``."""

    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    person_id: str | None = Field(None, min_length=1, max_length=128)
    q: str | None = Field(None, min_length=1, max_length=128)


class ViolationsQuery(BaseModel):
    """Query parameters of ``GET /api/violations``."""

    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    kind: Literal["blocked_attempt", "executed_breach", "suspected_proxy_trading"] | None = None
    broker: str | None = Field(None, min_length=1, max_length=128)
    session: date | None = None
    account_id: str | None = Field(None, min_length=1, max_length=128)


class AccountQuery(BaseModel):
    """Query parameters of ``GET /api/accounts/{account_id}``."""

    at: date | None = Field(None, description="the day to ask about; default today (Shanghai)")


class StatsQuery(BaseModel):
    """Query parameters of ``GET /api/stats``."""

    minutes: int = Field(60, ge=1, le=24 * 60)


class CheckResult(BaseModel):
    """``GET /api/check``: the decision the order would get now; nothing was reserved."""

    dry_run: Literal[True] = True
    decision: Decision
    violation: Literal["blocked_attempt"] | None = Field(
        description="the violation a real order would raise"
    )


class Stats(BaseModel):
    """``GET /api/stats``: counts since the worker started reading, and per minute."""

    totals: dict[str, int]
    series: list[dict[str, int | str]]
    violations_kept: int


def page_of(items: Sequence[T], offset: int, limit: int) -> Page[T]:
    """The page of ``items`` starting at ``offset``."""
    return Page[T](
        items=list(items[offset : offset + limit]), total=len(items), offset=offset, limit=limit
    )


def account_view(
    account_id: str,
    link: AccountLink | None,
    view: BanView,
    state: AccountState | None,
    *,
    today: date,
    session: date,
    controllers: Controllers | None = None,
) -> AccountView:
    """The account's person, the measures that apply on ``today`` or later, and its quotas."""
    person = view.get(link.person_id) if link is not None else None
    windows = [w for ws in person.windows.values() for w in ws] if person is not None else []
    current = sorted(
        (w for w in windows if w.end is None or w.end > today),
        key=lambda w: (w.start, w.decision_id, w.kind),
    )
    measures = [
        MeasureNow(**dict(w), status="active" if w.start <= today else "upcoming") for w in current
    ]
    trading = [w for w in windows if w.kind == "trading"]
    st = state or AccountState()
    return AccountView(
        account_id=account_id,
        kind=link.kind if link is not None else None,
        person_id=link.person_id if link is not None else None,
        as_of=today,
        session=session,
        measures=measures,
        decision_ids=sorted({m.decision_id for m in measures}),
        quotas=_quotas(st, trading, session),
        tracked_orders=len(st.orders),
        controllers=[
            ControllerView(
                person_id=pid,
                reference=c.reference,
                confirmed_by=c.confirmed_by,
                trading_measure_on_session=bool(
                    (p := view.get(pid)) is not None and p.trading_windows_on(session)
                ),
            )
            for pid, c in sorted((controllers.by if controllers else {}).items())
        ],
    )


def _quotas(st: AccountState, trading: list[Window], session: date) -> list[Quota]:
    out: list[Quota] = []
    for ev in sorted(st.evidence.values(), key=lambda e: e.evidence_id):
        key = f"ev:{ev.evidence_id}"
        used, reserved = st.used.get(key, 0), st.reserved(key, session)
        out.append(
            Quota(
                clause=ev.clause,
                evidence_id=ev.evidence_id,
                security=ev.security,
                side=ev.side,
                limit=ev.max_quantity,
                used=used,
                reserved=reserved,
                remaining=max(ev.max_quantity - used - reserved, 0),
                valid_from=ev.valid_from,
                valid_until=ev.valid_until,
                revoked=ev.revoked,
            )
        )
    if trading:
        # R4 step 3 measures pre-ban holdings before the earliest trading measure's start.
        start = min(w.start for w in trading)
        for security in sorted(st.holdings):
            key = f"66:{security}"
            held = st.pre_ban_holding(security, start)
            used, reserved = st.used.get(key, 0), st.reserved(key, session)
            out.append(
                Quota(
                    clause="6.6",
                    evidence_id=None,
                    security=security,
                    side="sell",
                    limit=held,
                    used=used,
                    reserved=reserved,
                    remaining=max(held - used - reserved, 0),
                )
            )
    return out


def register_entry(record: BanWindows) -> RegisterEntry:
    """A decision's register entry (without its history)."""
    return RegisterEntry.model_validate(record, from_attributes=True)


def register_detail(record: BanWindows) -> RegisterDetail:
    """A decision's register entry with its version history."""
    return RegisterDetail.model_validate(record, from_attributes=True)


def register_page(
    records: Iterable[BanWindows],
    offset: int,
    limit: int,
    person_id: str | None = None,
    text: str | None = None,
) -> Page[RegisterEntry]:
    """The register, newest served first, optionally one person's or matching a text.

    ``text`` matches, case-blind, a decision id, a person id or a part of the person's name.
    """
    wanted = _register_filter(person_id, text)
    chosen = [r for r in records if wanted(r)]
    chosen.sort(key=lambda r: r.decision_id)
    chosen.sort(key=lambda r: r.served_on or date.min, reverse=True)
    page = page_of(chosen, offset, limit)
    return Page[RegisterEntry](
        items=[register_entry(r) for r in page.items],
        total=page.total,
        offset=offset,
        limit=limit,
    )


def _register_filter(person_id: str | None, text: str | None) -> Callable[[BanWindows], bool]:
    needle = text.casefold() if text else None

    def wanted(r: BanWindows) -> bool:
        if person_id is not None and r.person_id != person_id:
            return False
        if needle is None:
            return True
        fields = (r.decision_id, r.person_id or "", r.person_name or "")
        return any(needle in f.casefold() for f in fields)

    return wanted
