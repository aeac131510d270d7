"""Ban decisions: validation (R1), lifecycle (issue/amend/revoke) and measure windows (R2)."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from marketban.domain.calendars import MarketCalendar, add_months
from marketban.domain.models import BanEvent, Measure

#: Art. 17: the 2021 provisions apply to violations that ended on or after this day.
PROVISIONS_2021_IN_FORCE = date(2021, 7, 19)
_MAX_PENDING = 32


class InvalidDecision(ValueError):  # noqa: N818 - it is a rule outcome, not a crash
    """A ban event that breaks the provisions; the message names the article."""


class Window(BaseModel):
    """When one measure of one decision applies: ``start`` inclusive, ``end`` exclusive."""

    decision_id: str
    kind: Literal["trading", "business"]
    start: date
    end: date | None  # None: lifetime
    estimated: bool
    measure: str

    def covers(self, day: date) -> bool:
        """Whether the measure applies on ``day``."""
        return self.start <= day and (self.end is None or day < self.end)

    def describe(self) -> str:
        """E.g. ``CSRC-2024-012 trading ban for 5 years, 2024-05-13 to 2029-05-12``."""
        until = (
            "for life" if self.end is None else f"to {date.fromordinal(self.end.toordinal() - 1)}"
        )
        est = " (calendar estimated)" if self.estimated else ""
        return f"{self.decision_id} {self.measure}, {self.start} {until}{est}"


class BanRecord(BaseModel):
    """The current state of one decision, and any events held until its ``issue`` arrives."""

    decision_id: str
    version: int = -1
    issued: bool = False
    person_id: str | None = None
    person_name: str | None = None
    issuer: str | None = None
    measures: list[Measure] = Field(default_factory=list)
    served_on: date | None = None
    violation_ended_on: date | None = None
    mitigated: bool = False
    revoked_on: date | None = None
    history: list[int] = Field(default_factory=list)
    pending: list[BanEvent] = Field(default_factory=list)


class PersonBans(BaseModel):
    """Every measure window of one person, by decision: the view orders are decided against."""

    person_id: str
    windows: dict[str, list[Window]] = Field(default_factory=dict)

    def trading_windows_on(self, session: date) -> list[Window]:
        """Trading-measure windows that cover ``session``."""
        return [
            w
            for ws in self.windows.values()
            for w in ws
            if w.kind == "trading" and w.covers(session)
        ]


def check_decision(record: BanRecord) -> None:
    """Raise InvalidDecision naming the article when the decision breaks R1."""
    if not record.measures:
        raise InvalidDecision("Art. 4: the decision imposes no measure")
    if record.served_on is None:
        raise InvalidDecision("Art. 16(4): served_on is missing, so no measure can start")
    old_rules = (
        record.violation_ended_on is not None
        and record.violation_ended_on < PROVISIONS_2021_IN_FORCE
    )
    for m in record.measures:
        if m.kind == "trading":
            _check_trading(m, old_rules=old_rules)
        elif not old_rules:  # Art. 17: under the 2006 provisions durations are taken as stated
            _check_business(m, mitigated=record.mitigated)


def _check_trading(m: Measure, *, old_rules: bool) -> None:
    if old_rules:
        raise InvalidDecision(
            "Art. 17: the violation ended before 2021-07-19, so the 2006 provisions govern, "
            "and they have no trading measure"
        )
    if m.lifetime:
        raise InvalidDecision("Art. 7 (last para.): a trading measure cannot be for life")
    if m.total_months > 60:  # noqa: PLR2004
        raise InvalidDecision(
            f"Art. 7 (last para.): a trading measure lasts at most 5 years, not {m.describe()}"
        )
    if m.total_months < 1:
        raise InvalidDecision("Art. 7 (last para.): a trading measure lasts at least 1 month")


def _check_business(m: Measure, *, mitigated: bool) -> None:
    if m.lifetime:
        if m.lifetime_ground is None or not 1 <= m.lifetime_ground <= 8:  # noqa: PLR2004
            raise InvalidDecision(
                "Art. 7: a lifetime business measure needs lifetime_ground, the Art. 7 item 1-8 "
                f"that allows it (got {m.lifetime_ground})"
            )
        return
    if m.total_months > 120:  # noqa: PLR2004
        raise InvalidDecision(
            f"Art. 7: a business measure lasts at most 10 years, not {m.describe()}"
        )
    if m.total_months < 36 and not mitigated:  # noqa: PLR2004
        raise InvalidDecision(
            f"Art. 7, 9: a business measure lasts at least 3 years unless mitigated (减轻), "
            f"not {m.describe()}"
        )


def windows_of(record: BanRecord, calendar: MarketCalendar) -> list[Window]:
    """The measure windows of a valid, issued decision (R2), cut at its revocation."""
    if not record.issued or record.served_on is None:
        return []
    out: list[Window] = []
    for m in record.measures:
        first = (
            calendar.next_trading_day(record.served_on)
            if m.kind == "trading"
            else calendar.next_working_day(record.served_on)
        )
        end = None if m.lifetime else add_months(first.day, m.total_months)
        if record.revoked_on is not None and (end is None or record.revoked_on < end):
            end = record.revoked_on
        if end is not None and end <= first.day:
            continue  # revoked before it started
        out.append(
            Window(
                decision_id=record.decision_id,
                kind=m.kind,
                start=first.day,
                end=end,
                estimated=first.estimated,
                measure=m.describe(),
            )
        )
    return out


class BanBook:
    """Applies ban events to decision records and keeps each person's windows up to date."""

    def __init__(
        self,
        calendar: MarketCalendar,
        bans: MutableMapping[str, BanRecord],
        persons: MutableMapping[str, PersonBans],
    ) -> None:
        self._calendar = calendar
        self._bans = bans
        self._persons = persons

    def apply(self, event: BanEvent) -> list[tuple[BanEvent, str]]:
        """Apply one event; return the events rejected by it, each with its reason."""
        record = self._bans.get(event.decision_id) or BanRecord(decision_id=event.decision_id)
        if event.action == "revoke" and event.effective_on is None:
            return [
                (event, "Art. 12: a revoke needs effective_on, the first day it no longer applies")
            ]
        if not record.issued and event.action != "issue":
            if any(p.version == event.version for p in record.pending):
                return []  # a repeat of a held event
            if len(record.pending) >= _MAX_PENDING:
                return [(event, f"more than {_MAX_PENDING} events held before the issue arrived")]
            record.pending.append(event)
            record.pending.sort(key=lambda e: e.version)
            self._bans[event.decision_id] = record
            return []
        if record.issued and event.version <= record.version:
            return []  # idempotent: a repeat or a stale event changes nothing
        previous_person = record.person_id
        rejected: list[tuple[BanEvent, str]] = []
        try:
            record = _transition(record, event)
        except InvalidDecision as exc:
            return [(event, str(exc))]
        if event.action == "issue":
            held, record.pending = record.pending, []
            for later in held:
                if later.version <= record.version:
                    continue
                try:
                    record = _transition(record, later)
                except InvalidDecision as exc:
                    rejected.append((later, str(exc)))
        self._bans[event.decision_id] = record
        self._reindex(record, previous_person)
        return rejected

    def _reindex(self, record: BanRecord, previous_person: str | None) -> None:
        if previous_person and previous_person != record.person_id:
            self._drop_windows(previous_person, record.decision_id)
        if record.person_id is None:
            return
        person = self._persons.get(record.person_id) or PersonBans(person_id=record.person_id)
        person.windows[record.decision_id] = windows_of(record, self._calendar)
        self._persons[record.person_id] = person

    def _drop_windows(self, person_id: str, decision_id: str) -> None:
        person = self._persons.get(person_id)
        if person is not None and person.windows.pop(decision_id, None) is not None:
            self._persons[person_id] = person


def _transition(record: BanRecord, event: BanEvent) -> BanRecord:
    """The record after ``event``, validated by R1; raises InvalidDecision."""
    new = record.model_copy(deep=True)
    fields = event.model_fields_set
    if event.action == "issue":
        new = BanRecord(
            decision_id=event.decision_id,
            issued=True,
            person_id=event.person_id,
            person_name=event.person_name,
            issuer=event.issuer,
            measures=list(event.measures),
            served_on=event.served_on,
            violation_ended_on=event.violation_ended_on,
            mitigated=event.mitigated,
            history=record.history,
            pending=record.pending,
        )
    elif event.action == "amend":
        # Art. 12 变更: the fields an amend carries replace the decision's.
        if event.measures:
            new.measures = list(event.measures)
        for name in ("served_on", "violation_ended_on", "person_name", "issuer"):
            if name in fields and getattr(event, name) is not None:
                setattr(new, name, getattr(event, name))
        if "mitigated" in fields:
            new.mitigated = event.mitigated
    else:
        new.revoked_on = event.effective_on
    if event.action != "revoke":
        check_decision(new)
    new.version = event.version
    new.history = [*record.history, event.version]
    return new
