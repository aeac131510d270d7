"""Ban decisions: validation (R1), lifecycle (issue/amend/revoke) and measure windows (R2)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
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


class BanChange(BaseModel):
    """One applied version of a decision, for the register's version history (Art. 12, 13)."""

    version: int
    action: Literal["issue", "amend", "revoke"]
    served_on: date | None = None
    effective_on: date | None = None
    measures: list[Measure] = Field(default_factory=list)


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
    pending: list[BanEvent] = Field(default_factory=list)
    history: list[BanChange] = Field(default_factory=list)


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


class BanWindows(BaseModel):
    """What one decision means for its person now: the record every worker reads (R2 applied).

    Keyed by ``decision_id`` on the internal ``ban-windows`` topic, so each key has one writer
    (the partition of the ``bans`` topic that holds the decision). It also carries the decision's
    public register entry (Art. 13: name, measures, dates, issuer, versions), so every worker can
    answer the register from its own memory; the fields default so that records written before
    they existed still read.
    """

    decision_id: str
    version: int
    person_id: str | None
    windows: list[Window]
    person_name: str | None = None
    issuer: str | None = None
    served_on: date | None = None
    revoked_on: date | None = None
    measures: list[Measure] = Field(default_factory=list)
    history: list[BanChange] = Field(default_factory=list)


class BanView:
    """Person -> windows of every decision, built from BanWindows records (a broadcast view).

    Records may arrive more than once or late (a worker replaying the topic while it also applies
    its own new ones); a record older than the one applied for its decision is ignored.
    """

    def __init__(self) -> None:
        self._persons: dict[str, PersonBans] = {}
        self._decisions: dict[str, tuple[int, str | None]] = {}
        self._register: dict[str, BanWindows] = {}

    def apply(self, record: BanWindows) -> None:
        """Apply one record unless a newer one for its decision was applied already."""
        seen = self._decisions.get(record.decision_id)
        if seen is not None and seen[0] > record.version:
            return
        if seen is not None and seen[1] is not None and seen[1] != record.person_id:
            old = self._persons.get(seen[1])
            if old is not None:
                old.windows.pop(record.decision_id, None)
        self._decisions[record.decision_id] = (record.version, record.person_id)
        self._register[record.decision_id] = record
        if record.person_id is not None:
            person = self._persons.setdefault(
                record.person_id, PersonBans(person_id=record.person_id)
            )
            person.windows[record.decision_id] = record.windows

    def holds(self, decision_id: str) -> bool:
        """Whether a record of this decision has been applied."""
        return decision_id in self._decisions

    def get(self, person_id: str) -> PersonBans | None:
        """The person's windows, or None when no decision names them."""
        return self._persons.get(person_id)

    def decision(self, decision_id: str) -> BanWindows | None:
        """The latest record of one decision (its register entry), or None."""
        return self._register.get(decision_id)

    def decisions(self) -> list[BanWindows]:
        """The latest record of every decision, in no particular order."""
        return list(self._register.values())

    def __len__(self) -> int:
        return len(self._persons)


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


def ban_windows(record: BanRecord, calendar: MarketCalendar) -> BanWindows:
    """What a decision record means for its person now, with its register entry (R2 applied)."""
    return BanWindows(
        decision_id=record.decision_id,
        version=record.version,
        person_id=record.person_id,
        windows=windows_of(record, calendar),
        person_name=record.person_name,
        issuer=record.issuer,
        served_on=record.served_on,
        revoked_on=record.revoked_on,
        measures=record.measures,
        history=record.history,
    )


class BanBook:
    """Applies ban events to decision records and publishes what each change means (R1, R2)."""

    def __init__(
        self,
        calendar: MarketCalendar,
        bans: MutableMapping[str, BanRecord],
        publish: Callable[[BanWindows], None],
    ) -> None:
        self._calendar = calendar
        self._bans = bans
        self._publish = publish

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
        self._publish(ban_windows(record, self._calendar))
        return rejected


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
    new.history = [
        *record.history,
        BanChange(
            version=event.version,
            action=event.action,
            served_on=new.served_on,
            effective_on=event.effective_on,
            measures=list(new.measures),
        ),
    ]
    return new
