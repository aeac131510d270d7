"""The decision engine: one input event in, the decisions/violations/rejections it causes out.

The same engine runs over plain dicts (``marketban replay``, tests) and over a task's store (the
decider): its state lives in four mappings and every change is written back with ``m[key] = v``,
which is what marks a key for the task's changelog. Time comes only from the events (spec R6).
A ban change also leaves as a ``ban-windows`` output (what the decision now means, for the
register); replay and audit ignore those, the stream publishes them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal

from msgspec import Struct
from pydantic import BaseModel, Field

from marketban.domain.bans import BanBook, BanRecord, BanView, BanWindows, Window
from marketban.domain.calendars import MarketCalendar
from marketban.domain.fastpath import (
    ClaimWire,
    DecisionRecord,
    OrderWire,
    decode_order,
    json_bytes,
)
from marketban.domain.models import (
    AccountLink,
    BanEvent,
    Clause,
    Decision,
    Evidence,
    Execution,
    ExemptionClaim,
    Holding,
    Order,
    Rejected,
    Side,
    Verdict,
    Violation,
)
from marketban.domain.proxy import (
    ProxyConfig,
    SentUses,
    TerminalState,
    TerminalUse,
    decode_use,
    decode_uses_bytes,
    on_use,
    repeats,
    terminal_id,
    worth_sending,
)
from marketban.domain.wire import (
    MAX_PAYLOAD_BYTES,
    DecodeError,
    parse_object,
    payload_text,
    validate,
)

CLAUSE_NAMES: Final = {
    "6.1": "ordered buy-back (责令回购)",
    "6.2": "ordered disposal of illegally held securities",
    "6.3": "court-enforced deduction, sale or transfer",
    "6.4": "credit-risk unwinding",
    "6.5": "obligations disclosed before the ban",
    "6.6": "sale of pre-ban holdings",
    "6.7": "other approved case",
}
#: Day orders lapse at the close; tracked orders are kept this long for late execution reports.
ORDER_RETENTION = timedelta(days=7)

Payload = bytes | dict[str, Any]
#: A decision on the fast path and R8's internal records are msgspec structs; the rest pydantic.
Output = tuple[str, str | None, BaseModel | Struct]
#: R8's hops between the task of an account and the task of a terminal: outputs that come back
#: as inputs (the stream re-keys them through its own topics; ``Engine.run`` takes them at once).
ROUTED: Final = frozenset({"terminal-uses", "proxy-suspicions"})
#: Accounts whose R8 notes an engine keeps decoded (``Engine._sent``): a few MB per task.
_SENT_KEPT: Final = 16_384
#: Outputs that are not records of the spec's output topics (R7 prints only those).
INTERNAL_OUTPUTS: Final = frozenset({"ban-windows", *ROUTED})


class Source(Struct, frozen=True):
    """Where an input came from, for rejection records.

    One is made for every input message: a msgspec struct costs 0.1 us to build where a frozen
    dataclass cost 1.1 us, a fifth of the engine's time per order (docs/benchmarks.md).
    """

    topic: str
    partition: int | None = None
    offset: int | None = None
    line: int | None = None


class OrderTrack(BaseModel):
    """What R5 needs to remember of an order of a linked account, until its session is long over."""

    order_id: str
    session: date
    verdict: Verdict | Literal["undecided"]
    side: Side
    security: str
    quantity: int
    claim: ExemptionClaim | None = None
    quota_key: str | None = None
    reserved: int = 0  # open reservation against quota_key (allow_exempt)
    covered: int = 0  # what a plain allow still covers
    open: bool = True
    breached: bool = False


class AccountState(BaseModel):
    """Per-account state: evidence, holdings snapshots, quota use and tracked orders."""

    evidence: dict[str, Evidence] = Field(default_factory=dict)
    holdings: dict[str, list[tuple[date, int]]] = Field(default_factory=dict)
    used: dict[str, int] = Field(default_factory=dict)
    orders: dict[str, OrderTrack] = Field(default_factory=dict)

    def reserved(self, quota_key: str, session: date) -> int:
        """Open reservations against a quota by orders of ``session`` (R5: they lapse after it)."""
        return sum(
            t.reserved
            for t in self.orders.values()
            if t.open and t.quota_key == quota_key and t.session == session
        )

    def pre_ban_holding(self, security: str, before: date) -> int:
        """The latest snapshot quantity of ``security`` with ``as_of`` before ``before``."""
        best: tuple[date, int] | None = None
        for as_of, qty in self.holdings.get(security, ()):
            if as_of < before and (best is None or as_of > best[0]):
                best = (as_of, qty)
        return best[1] if best else 0

    def evict_before(self, session: date) -> None:
        """Forget orders whose session ended long before ``session`` (bounded state)."""
        horizon = session - ORDER_RETENTION
        stale = [oid for oid, t in self.orders.items() if t.session < horizon]
        for oid in stale:
            del self.orders[oid]


class Controllers(BaseModel):
    """The persons who control an account besides its owner (R8), each with its link record."""

    by: dict[str, AccountLink] = Field(default_factory=dict)


class Raised(BaseModel):
    """A suspicion already emitted for its account (two terminals may raise the same one)."""

    session: date | None = None


@dataclass
class State:
    """The engine's state, as mappings: plain dicts here, a task's store in the decider."""

    bans: MutableMapping[str, BanRecord] = field(default_factory=dict)
    persons: BanView = field(default_factory=BanView)
    links: MutableMapping[str, AccountLink] = field(default_factory=dict)
    accounts: MutableMapping[str, AccountState] = field(default_factory=dict)
    controllers: MutableMapping[str, Controllers] = field(default_factory=dict)
    terminals: MutableMapping[str, TerminalState] = field(default_factory=dict)
    raised: MutableMapping[str, Raised] = field(default_factory=dict)
    #: Per account, what its orders' terminal uses sent R8 (``proxy.worth_sending``).
    sent_uses: MutableMapping[str, SentUses] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BanOutcome:
    """What one ``bans`` record did, in a form another engine over the same bans can take.

    A ban's effect depends only on the ``bans`` history before it, which every task of a worker
    applies in the same order: one task computes it (``Engine.handle_ban``), the others take it
    (``Engine.take_ban``) instead of validating and transitioning the decision again. Absolute,
    not a difference: the decision records as written (encoded) and what they mean.
    """

    written: tuple[tuple[str, bytes | None], ...]  # None: the record was deleted
    windows: tuple[BanWindows, ...]
    outputs: tuple[Output, ...]


class _Recording(MutableMapping[str, BanRecord]):
    """The engine's ``bans`` mapping, noting the keys written (what ``BanOutcome`` carries)."""

    __slots__ = ("_inner", "written")

    def __init__(self, inner: MutableMapping[str, BanRecord]) -> None:
        self._inner = inner
        self.written: list[str] = []

    def __getitem__(self, key: str) -> BanRecord:
        return self._inner[key]

    def get(self, key: str, default: Any = None) -> Any:  # noqa: ANN401 - Mapping's signature
        """The record, or ``default``."""
        return self._inner.get(key, default)

    def __setitem__(self, key: str, value: BanRecord) -> None:
        self._inner[key] = value
        self.written.append(key)

    def __delitem__(self, key: str) -> None:
        del self._inner[key]
        self.written.append(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)


@dataclass(frozen=True, slots=True)
class _Measures:
    """Who an order of an account is decided for, and the trading windows that apply."""

    person_id: str | None  # the person the decision names
    persons: list[str]  # owner and controllers
    windows: list[Window]  # every window that applies, owner's and controllers'
    owner_windows: list[Window]
    via: list[str]  # the controlled links some of the windows come through, described
    banned: dict[str, list[str]]  # person -> the decisions whose windows apply


@dataclass(frozen=True, slots=True)
class _Ask:
    """What R4 judges: an order, or an execution checked as an order (R5)."""

    side: Side
    security: str
    quantity: int
    claim: ExemptionClaim | None


@dataclass(frozen=True, slots=True)
class _Judgement:
    verdict: Verdict
    clause: Clause | None
    quota_key: str | None
    text: str


class Engine:
    """Applies input events to the state and returns the output records they cause."""

    def __init__(
        self,
        calendar: MarketCalendar,
        state: State | None = None,
        proxy: ProxyConfig | None = None,
    ) -> None:
        self.calendar = calendar
        self.state = state or State()
        self.proxy = proxy or ProxyConfig()
        self._changed: list[BanWindows] = []
        #: The latest ``state.sent_uses`` of the accounts that traded last, kept decoded: an
        #: active trader's repeated orders then cost R8 no state read. Always what the state
        #: holds (written through); an engine lives as long as its task's open store.
        self._sent: OrderedDict[str, SentUses] = OrderedDict()
        self._bans_written = _Recording(self.state.bans)
        self.book = BanBook(calendar, self._bans_written, self._changed.append)

    # ---- entry point ---------------------------------------------------------------------------

    def handle(
        self,
        topic: str,
        key: str | None,
        payload: Payload,
        source: Source,
        now: datetime | None = None,
    ) -> list[Output]:
        """Process one input message of ``topic`` (spec name, no prefix).

        ``now`` is the processing time an adapter may stamp on outputs; the decision itself never
        depends on it (R6). Without it, outputs carry the event's own time.
        """
        if topic == "orders" and isinstance(payload, bytes) and len(payload) <= MAX_PAYLOAD_BYTES:
            fast = decode_order(payload)
            if fast is not None and fast.account_id == key:
                return self._decide(key, fast, payload, source, now)
        if topic == "terminal-uses" and isinstance(payload, bytes):
            # Written by a task of ours: decoded straight into structs.
            uses = decode_uses_bytes(payload)
            if uses is not None:
                _prefetch(self.state.terminals, [use.terminal for use in uses])
                return [o for use in uses for o in self._on_terminal_use(use, now)]
        try:
            obj = parse_object(payload)
        except DecodeError as exc:
            return [rejected_output(source, key, payload, str(exc))]
        try:
            if topic == "orders":
                return self._on_order(key, obj, source, now)
            if topic == "bans":
                return self._on_ban(key, obj, payload, source)
            if topic == "accounts":
                return self._on_account(key, obj)
            if topic == "evidence":
                return self._on_evidence(key, obj)
            if topic == "holdings":
                return self._on_holding(key, obj)
            if topic == "executions":
                return self._on_execution(key, obj, now)
            if topic == "terminal-uses":
                return self._on_terminal_use(decode_use(obj), now)
            if topic == "proxy-suspicions":
                return self._on_suspicion(validate(Violation, obj))
        except DecodeError as exc:
            return [rejected_output(source, key, payload, str(exc))]
        return [rejected_output(source, key, payload, f"unknown topic {topic!r}")]

    def prefetch_orders(self, orders: list[tuple[str, bytes]]) -> None:
        """Let a store read in one go the state these orders (account id, payload) will read.

        What R8 keeps is read only for orders that name a MAC: the others never read it.
        """
        _prefetch(self.state.links, [account for account, _ in orders])
        sent = self._sent
        _prefetch(
            self.state.sent_uses,
            [a for a, payload in orders if a not in sent and b'"mac"' in payload],
        )

    def run(
        self,
        topic: str,
        key: str | None,
        payload: Payload,
        source: Source,
        now: datetime | None = None,
    ) -> list[Output]:
        """``handle``, with R8's hops taken at once: what one process gives (replay, tests).

        The stream takes the same hops through its own topics (``ROUTED``), so a use reaches its
        terminal later there; R8 gives the same suspicions either way (the pair is symmetric).
        """
        out: list[Output] = []
        pending = [(topic, key, payload, source)]
        while pending:
            t, k, p, src = pending.pop(0)
            for o in self.handle(t, k, p, src, now):
                if o[0] in ROUTED:
                    pending.append((o[0], o[1], json_bytes(o[2]), Source(topic=o[0])))
                else:
                    out.append(o)
        return out

    def fail_closed(
        self, topic: str, key: str | None, payload: Payload, source: Source, error: str
    ) -> list[Output]:
        """Outputs for an input the engine could not process: rejected, and blocked if an order.

        The last resort of the worker's error handler, so it must not raise itself: if even the
        order's block decision cannot be built, the input is still rejected.
        """
        if topic == "orders":
            try:
                obj = parse_object(payload)
            except DecodeError:
                obj = {}
            try:
                return self._invalid_order(key, obj, source, error)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                error = f"{error}; and building its block decision failed: {exc!r}"
        return [rejected_output(source, key, payload, error)]

    def dry_run(self, order: Order) -> list[Output]:
        """What R3/R4 give ``order`` now, changing no state: a gateway's own pre-check.

        The same ``_decide`` as a real order, over a scratch copy of the account's state, so
        nothing is reserved and the order is not remembered (its order_id stays free).
        """
        scratch = State(
            persons=self.state.persons,
            links=self.state.links,
            accounts=_Scratch(self.state.accounts),
            controllers=self.state.controllers,
        )
        engine = Engine(self.calendar, scratch, self.proxy)
        raw = order.model_dump(mode="json")
        outputs = engine._decide(order.account_id, order, raw, Source(topic="check"), None)
        return [o for o in outputs if o[0] not in ROUTED]

    # ---- reference data ------------------------------------------------------------------------

    def handle_ban(
        self, key: str | None, payload: Payload, source: Source
    ) -> tuple[list[Output], BanOutcome]:
        """``handle`` of a ``bans`` record, and what it did for other engines to take."""
        outputs = self.handle("bans", key, payload, source)
        bans = self.state.bans
        written: list[tuple[str, bytes | None]] = []
        for decision_id in dict.fromkeys(self._bans_written.written):
            record = bans.get(decision_id)
            written.append((decision_id, None if record is None else json_bytes(record)))
        windows = tuple(o[2] for o in outputs if isinstance(o[2], BanWindows))
        return outputs, BanOutcome(tuple(written), windows, tuple(outputs))

    def take_ban(self, outcome: BanOutcome) -> list[Output]:
        """Apply a ``bans`` record's outcome computed by another engine (``handle_ban``)."""
        bans = self.state.bans
        put = getattr(bans, "put_encoded", None)
        for decision_id, raw in outcome.written:
            if raw is None:
                bans.pop(decision_id, None)
            elif put is not None:
                put(decision_id, raw)  # a store keeps the bytes; most are never read again
            else:
                bans[decision_id] = BanRecord.model_validate_json(raw)
        for record in outcome.windows:
            self.state.persons.apply(record)
        return list(outcome.outputs)

    def _on_ban(
        self, key: str | None, obj: dict[str, Any], payload: Payload, src: Source
    ) -> list[Output]:
        self._bans_written.written.clear()
        event = validate(BanEvent, obj)
        _require_key(key, event.decision_id, "decision_id")
        out: list[Output] = []
        rejected = self.book.apply(event)
        # What the change means is applied here at once and also leaves as an output: the stream
        # sends it to the ban-windows topic, from which every worker's register is built.
        for record in self._changed:
            self.state.persons.apply(record)
            out.append(("ban-windows", record.decision_id, record))
        self._changed.clear()
        for bad, reason in rejected:
            if bad is event:
                raw, note = payload, ""
            else:
                # A held amend/revoke, found invalid once its issue arrived.
                raw, note = bad.model_dump(mode="json"), f" (held {bad.action} v{bad.version})"
            error = f"invalid decision {event.decision_id}: {reason}{note}"
            out.append(rejected_output(src, key, raw, error))
        return out

    def _on_account(self, key: str | None, obj: dict[str, Any]) -> list[Output]:
        link = validate(AccountLink, obj)
        _require_key(key, link.account_id, "account_id")
        if link.kind != "controlled":
            self.state.links[link.account_id] = link
            return []
        ctl = self.state.controllers.get(link.account_id) or Controllers()
        if link.revoked:
            ctl.by.pop(link.person_id, None)
        else:
            ctl.by[link.person_id] = link
        if ctl.by:
            self.state.controllers[link.account_id] = ctl
        elif link.account_id in self.state.controllers:
            del self.state.controllers[link.account_id]
        return []

    # ---- R8 ------------------------------------------------------------------------------------

    def _on_terminal_use(self, use: TerminalUse, now: datetime | None) -> list[Output]:
        st = self.state.terminals.get(use.terminal) or TerminalState()
        cfg = self.proxy
        found, changed = on_use(st, use, self.calendar, cfg.window, cfg.shared_limit, now)
        if changed:  # a repeated use leaves the state as it was: no write, no changelog record
            self.state.terminals[use.terminal] = st
        return [("proxy-suspicions", v.account_id, v) for v in found]

    def _on_suspicion(self, violation: Violation) -> list[Output]:
        if violation.violation_id in self.state.raised:
            return []
        self.state.raised[violation.violation_id] = Raised(session=violation.session)
        return [("violations", violation.account_id, violation)]

    def _measures(self, account_id: str, link: AccountLink | None, session: date) -> _Measures:
        """The owner's and the controllers' trading windows on ``session`` (R4, R8)."""
        persons: list[str] = []
        windows: list[Window] = []
        owner_windows: list[Window] = []
        banned: dict[str, list[str]] = {}
        named = link.person_id if link is not None else None
        first_controller: str | None = None
        if link is not None:
            persons.append(link.person_id)
            person = self.state.persons.get(link.person_id)
            owner_windows = person.trading_windows_on(session) if person else []
            windows += owner_windows
            if owner_windows:
                banned[link.person_id] = _decision_ids(owner_windows)
        via: list[str] = []
        ctl = self.state.controllers.get(account_id)
        for pid, c in sorted(ctl.by.items()) if ctl else ():
            if pid in banned:
                continue
            persons.append(pid)
            person = self.state.persons.get(pid)
            found = person.trading_windows_on(session) if person else []
            if found:
                windows += found
                banned[pid] = _decision_ids(found)
                ref = f", confirmed suspicion {c.reference}" if c.reference else ""
                via.append(f"account {account_id} is controlled by {pid} (controlled link{ref})")
                first_controller = first_controller or pid
        if not owner_windows and first_controller is not None:
            named = first_controller  # the decision names whose measure it applies
        return _Measures(named, persons, windows, owner_windows, via, banned)

    def _terminal_use(self, order: Order | OrderWire, m: _Measures, session: date) -> Output | None:
        """R8's record of this order's use of its terminal, when its MAC identifies one.

        None too for a repeat that cannot change what the terminal knows (``worth_sending``):
        an active trader's next orders from the same device in a session cost no hop.
        """
        terminal = order.terminal
        tid = terminal_id(terminal.mac) if terminal is not None else None
        if tid is None or terminal is None:
            return None
        account = order.account_id
        sent = self._sent.get(account)
        if sent is not None:
            self._sent.move_to_end(account)
        else:
            sent = self.state.sent_uses.get(account)
            if sent is not None:
                self._remember(account, sent)
        last = sent.by_terminal.get(tid) if sent is not None else None
        ip = terminal.ip or None
        if (  # most orders: no use is even built
            last is not None
            and last.session == session
            and repeats(last, order.entered_at, m.persons, m.banned, ip)
        ):
            return None
        use = TerminalUse(
            terminal=tid,
            ip=ip,
            account_id=account,
            persons=m.persons,
            banned=m.banned,
            session=session,
            order_id=order.order_id,
            entered_at=order.entered_at,
            broker=order.broker,
        )
        send, keep = worth_sending(last, use)
        if keep is not None:
            sent = sent or SentUses()
            sent.by_terminal[tid] = keep
            self.state.sent_uses[account] = sent
            self._remember(account, sent)
        return ("terminal-uses", tid, use) if send else None

    def _remember(self, account: str, sent: SentUses) -> None:
        sent_cache = self._sent
        sent_cache[account] = sent
        sent_cache.move_to_end(account)
        if len(sent_cache) > _SENT_KEPT:
            sent_cache.popitem(last=False)  # the account that traded longest ago

    def _on_evidence(self, key: str | None, obj: dict[str, Any]) -> list[Output]:
        ev = validate(Evidence, obj)
        _require_key(key, ev.account_id, "account_id")
        st = self.state.accounts.get(ev.account_id) or AccountState()
        st.evidence[ev.evidence_id] = ev
        self.state.accounts[ev.account_id] = st
        return []

    def _on_holding(self, key: str | None, obj: dict[str, Any]) -> list[Output]:
        h = validate(Holding, obj)
        _require_key(key, h.account_id, "account_id")
        st = self.state.accounts.get(h.account_id) or AccountState()
        snaps = [s for s in st.holdings.get(h.security, []) if s[0] != h.as_of]
        snaps.append((h.as_of, h.quantity))
        snaps.sort()
        st.holdings[h.security] = snaps
        self.state.accounts[h.account_id] = st
        return []

    # ---- orders (R3, R4) -----------------------------------------------------------------------

    def _on_order(
        self, key: str | None, obj: dict[str, Any], src: Source, now: datetime | None
    ) -> list[Output]:
        try:
            order = validate(Order, obj)
            _require_key(key, order.account_id, "account_id")
        except DecodeError as exc:
            return self._invalid_order(key, obj, src, str(exc))
        return self._decide(key, order, obj, src, now)

    def _decide(
        self,
        key: str | None,
        order: Order | OrderWire,
        raw: Payload,
        src: Source,
        now: datetime | None,
    ) -> list[Output]:
        """R3/R4 for a valid order (the pydantic model, or the fast path's struct)."""
        session_day = self.calendar.session_of(order.entered_at)
        session = session_day.day
        decided_at = now or order.entered_at
        link = self.state.links.get(order.account_id)
        m = self._measures(order.account_id, link, session)
        if not m.persons:
            out = [
                self._decision(
                    order,
                    person_id=None,
                    verdict="allow",
                    clause=None,
                    ids=[],
                    reason="no person is linked to this account",
                    session=session,
                    decided_at=decided_at,
                )
            ]
            return self._with_use(out, order, m, session)
        st = self.state.accounts.get(order.account_id) or AccountState()
        seen = st.orders.get(order.order_id)
        # An execution can be consumed before its order (they travel on different topics); the
        # order still gets its one decision, and the breach its fill raised stays recorded.
        duplicate = seen if seen is not None and seen.verdict != "undecided" else None
        if duplicate is not None:
            return [
                rejected_output(
                    src,
                    key,
                    parse_object(raw),  # the same text whichever path decoded the order
                    f"duplicate order_id {order.order_id}: already decided ({duplicate.verdict}) "
                    f"for session {duplicate.session}",
                )
            ]
        st.evict_before(session)
        claim = (
            order.exemption.to_model()
            if isinstance(order.exemption, ClaimWire)
            else order.exemption
        )
        track = OrderTrack(
            order_id=order.order_id,
            session=session,
            verdict="allow",
            side=order.side,
            security=order.security,
            quantity=order.quantity,
            claim=claim,
            breached=seen is not None and seen.breached,
        )
        est = (
            " (session date estimated: the calendar does not know that year yet)"
            if session_day.estimated
            else ""
        )
        if not m.windows:
            track.covered = order.quantity
            st.orders[order.order_id] = track
            self.state.accounts[order.account_id] = st
            who = " nor ".join(f"person {p}" for p in m.persons)
            text = f"{who} has no trading measure for session {session}{est}"
            out = [
                self._decision(
                    order,
                    person_id=m.person_id,
                    verdict="allow",
                    clause=None,
                    ids=[],
                    reason=text,
                    session=session,
                    decided_at=decided_at,
                )
            ]
            return self._with_use(out, order, m, session)
        ids = _decision_ids(m.windows)
        ask = _Ask(order.side, order.security, order.quantity, claim)
        j = self._judge(st, m, session, ask)
        track.verdict = j.verdict
        if j.verdict == "allow_exempt":
            track.quota_key = j.quota_key
            track.reserved = order.quantity
        st.orders[order.order_id] = track
        self.state.accounts[order.account_id] = st
        decision = self._decision(
            order,
            person_id=m.person_id,
            verdict=j.verdict,
            clause=j.clause,
            ids=ids,
            reason=j.text + est,
            session=session,
            decided_at=decided_at,
        )
        if j.verdict != "block":
            return self._with_use([decision], order, m, session)
        violation = Violation(
            violation_id=f"blocked_attempt:{order.order_id}",
            kind="blocked_attempt",
            severity="medium",
            account_id=order.account_id,
            person_id=m.person_id,
            order_id=order.order_id,
            decision_ids=ids,
            broker=order.broker,
            session=session,
            detected_at=decided_at,
            detail=j.text,
        )
        return self._with_use(
            [decision, ("violations", order.account_id, violation)], order, m, session
        )

    def _with_use(
        self, out: list[Output], order: Order | OrderWire, m: _Measures, session: date
    ) -> list[Output]:
        use = self._terminal_use(order, m, session)
        if use is not None:
            out.append(use)
        return out

    def _judge(self, st: AccountState, m: _Measures, session: date, ask: _Ask) -> _Judgement:
        """R4 steps 2-4 for an account whose persons are under a trading measure on ``session``.

        Every window must allow the order. 6.6 (pre-ban holdings) speaks for the owner's own
        bans only: an account's holdings are not its controller's pre-ban holdings (R8).
        """
        windows = m.windows
        bans = "; ".join(w.describe() for w in windows)
        if m.via:
            bans += " (" + "; ".join(m.via) + ")"
        failures: list[str] = []
        claim = ask.claim
        if claim is not None and claim.clause != "6.6":
            problem = _evidence_problem(st, claim, windows, session, ask)
            if problem is None:
                key = f"ev:{claim.reference}"
                ev = st.evidence[claim.reference or ""]
                taken = st.used.get(key, 0) + st.reserved(key, session)
                left = ev.max_quantity - taken - ask.quantity
                return _Judgement(
                    "allow_exempt",
                    claim.clause,
                    key,
                    f"allowed under the Art. {_art(claim.clause)} exception, "
                    f"{CLAUSE_NAMES[claim.clause]}, with evidence {ev.evidence_id} "
                    f"({left} of {ev.max_quantity} left after this order), despite {bans}",
                )
            failures.append(f"claimed exception {claim.clause} failed: {problem}")
        if claim is not None and claim.clause == "6.6" and ask.side == "buy":
            failures.append("claimed exception 6.6 covers only sales of pre-ban holdings")
        if ask.side == "sell" and m.via:
            failures.append(
                "the Art. 6(6) exception for pre-ban holdings does not apply through a "
                "controlled link"
            )
        elif ask.side == "sell":
            start = min(w.start for w in windows)
            key = f"66:{ask.security}"
            held = st.pre_ban_holding(ask.security, start)
            taken = st.used.get(key, 0) + st.reserved(key, session)
            if held - taken >= ask.quantity:
                return _Judgement(
                    "allow_exempt",
                    "6.6",
                    key,
                    f"allowed under the Art. 6(6) exception, sale of pre-ban holdings: {held} of "
                    f"{ask.security} held before {start}, {taken} already sold or reserved, "
                    f"{held - taken - ask.quantity} left after this order, despite {bans}",
                )
            failures.append(
                f"pre-ban holdings do not cover the sale: {held} of {ask.security} held before "
                f"{start}, {taken} already sold or reserved, the order needs {ask.quantity}"
            )
        why = f"; {'; '.join(failures)}" if failures else ""
        return _Judgement("block", None, None, f"blocked: {bans} applies to session {session}{why}")

    def _invalid_order(
        self, key: str | None, obj: dict[str, Any], src: Source, error: str
    ) -> list[Output]:
        out: list[Output] = [rejected_output(src, key, obj, f"invalid order: {error}")]
        order_id, account_id = obj.get("order_id"), obj.get("account_id")
        if isinstance(order_id, str) and order_id and isinstance(account_id, str) and account_id:
            # Only a record keyed by its account sits in the partition that holds the account's
            # state: a mis-keyed one cannot see it in the worker, so replay must not either.
            link = self.state.links.get(account_id) if key == account_id else None
            out.append(
                (
                    "decisions",
                    account_id,
                    Decision(
                        order_id=order_id,
                        account_id=account_id,
                        person_id=link.person_id if link else None,
                        verdict="block",
                        clause=None,
                        decision_ids=[],
                        reason=f"invalid order: {error}",
                        session=None,
                        decided_at=None,
                    ),
                )
            )
        return out

    # ---- executions (R5) -----------------------------------------------------------------------

    def _on_execution(
        self, key: str | None, obj: dict[str, Any], now: datetime | None
    ) -> list[Output]:
        ex = validate(Execution, obj)
        _require_key(key, ex.account_id, "account_id")
        st = self.state.accounts.get(ex.account_id)
        track = st.orders.get(ex.order_id) if st else None
        if ex.status != "fill":
            if st is not None and track is not None and track.open:
                track.open, track.reserved, track.covered = False, 0, 0
                self.state.accounts[ex.account_id] = st
            return []
        excess = ex.quantity
        if st is not None and track is not None:
            if track.quota_key is not None:
                take = min(excess, track.reserved)
                track.reserved -= take
                st.used[track.quota_key] = st.used.get(track.quota_key, 0) + take
                excess -= take
            elif track.verdict == "allow":
                take = min(excess, track.covered)
                track.covered -= take
                excess -= take
            self.state.accounts[ex.account_id] = st
        if excess == 0:
            return []
        session = self.calendar.session_of(ex.executed_at).day
        m = self._measures(ex.account_id, self.state.links.get(ex.account_id), session)
        windows = m.windows
        if not windows:
            return []
        st = st or AccountState()
        claim = track.claim if track is not None else None
        j = self._judge(st, m, session, _Ask(ex.side, ex.security, excess, claim))
        if j.verdict == "allow_exempt" and j.quota_key is not None:
            # R5: checked as an order at its execution time, it would have been allowed: it uses
            # that quota directly (nothing is reserved, the quantity is already executed).
            st.used[j.quota_key] = st.used.get(j.quota_key, 0) + excess
            self.state.accounts[ex.account_id] = st
            return []
        if track is None:
            track = OrderTrack(
                order_id=ex.order_id,
                session=session,
                verdict="undecided",
                side=ex.side,
                security=ex.security,
                quantity=0,
                open=False,
            )
            st.orders[ex.order_id] = track
        if track.breached:
            self.state.accounts[ex.account_id] = st
            return []  # each violation is emitted once
        track.breached = True
        self.state.accounts[ex.account_id] = st
        what = {
            "undecided": "an order that was never decided",
            "block": "an order that was blocked",
        }.get(track.verdict, f"an order decided {track.verdict}, beyond what that decision covered")
        detail = f"{excess} of {ex.security} {ex.side} executed on {what} ({ex.order_id}); {j.text}"
        violation = Violation(
            violation_id=f"executed_breach:{ex.order_id}",
            kind="executed_breach",
            severity="high",
            account_id=ex.account_id,
            person_id=m.person_id,
            order_id=ex.order_id,
            decision_ids=_decision_ids(windows),
            broker=ex.broker,
            session=session,
            detected_at=now or ex.executed_at,
            detail=detail,
        )
        return [("violations", ex.account_id, violation)]

    # ---- outputs -------------------------------------------------------------------------------

    @staticmethod
    def _decision(
        order: Order | OrderWire,
        *,
        person_id: str | None,
        verdict: Verdict,
        clause: Clause | None,
        ids: list[str],
        reason: str,
        session: date,
        decided_at: datetime,
    ) -> Output:
        return (
            "decisions",
            order.account_id,
            DecisionRecord(
                order_id=order.order_id,
                account_id=order.account_id,
                person_id=person_id,
                verdict=verdict,
                clause=clause,
                decision_ids=ids,
                reason=reason,
                session=session,
                decided_at=decided_at,
            ),
        )


class _Scratch(MutableMapping[str, AccountState]):
    """Reads copies of another mapping's account states; keeps every write to itself."""

    def __init__(self, base: Mapping[str, AccountState]) -> None:
        self._base = base
        self._own: dict[str, AccountState] = {}

    def __getitem__(self, key: str) -> AccountState:
        if key in self._own:
            return self._own[key]
        # A dict-backed state hands out its live objects, which _decide mutates: copy first.
        return self._base[key].model_copy(deep=True)

    def __setitem__(self, key: str, value: AccountState) -> None:
        self._own[key] = value

    def __delitem__(self, key: str) -> None:
        self._own.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter({*self._base, *self._own})

    def __len__(self) -> int:
        return len({*self._base, *self._own})


def _prefetch(mapping: object, keys: list[str]) -> None:
    """Let a store that reads many keys at once cheaper than one by one read ``keys`` now."""
    prefetch = getattr(mapping, "prefetch", None)
    if prefetch is not None:
        prefetch(keys)


def rejected_output(src: Source, key: str | None, payload: Payload, error: str) -> Output:
    """The ``rejected`` record for an input: where it came from, its text and the error."""
    text, truncated = payload_text(payload)
    return (
        "rejected",
        key,
        Rejected(
            source_topic=src.topic,
            partition=src.partition,
            offset=src.offset,
            line=src.line,
            key=key,
            payload=text,
            payload_truncated=truncated,
            error=error,
        ),
    )


def _require_key(key: str | None, expected: str, field_name: str) -> None:
    if key != expected:
        raise DecodeError(
            f"message key {key!r} is not its {field_name} {expected!r}: records must be keyed by "
            f"{field_name} so that each one reaches the partition that holds its state"
        )


def _evidence_problem(
    st: AccountState, claim: ExemptionClaim, windows: list[Window], session: date, ask: _Ask
) -> str | None:
    """Why the claimed evidence does not allow this order, or None when it does (R4 step 2)."""
    if claim.reference is None:
        return "the claim names no evidence reference"
    ev = st.evidence.get(claim.reference)
    if ev is None:
        return f"no evidence {claim.reference} is on file for this account"
    name = f"evidence {ev.evidence_id}"
    if ev.clause != claim.clause:
        return f"{name} is for clause {ev.clause}, not {claim.clause}"
    if ev.revoked:
        return f"{name} has been revoked"
    if not ev.valid_from <= session <= ev.valid_until:
        return f"{name} is valid {ev.valid_from} to {ev.valid_until}, not for session {session}"
    if ev.security is not None and ev.security != ask.security:
        return f"{name} covers security {ev.security}, not {ask.security}"
    if ev.side != ask.side:
        return f"{name} allows {ev.side} orders, not {ask.side}"
    if ev.clause == "6.5":
        start = min(w.start for w in windows)
        if ev.disclosed_on is None or ev.disclosed_on >= start:
            return f"the disclosure of {ev.disclosed_on} is not before the ban's start {start}"
    key = f"ev:{ev.evidence_id}"
    left = ev.max_quantity - st.used.get(key, 0) - st.reserved(key, session)
    if left < ask.quantity:
        return (
            f"{name} has {max(left, 0)} of {ev.max_quantity} left, the order needs {ask.quantity}"
        )
    return None


def _decision_ids(windows: list[Window]) -> list[str]:
    return sorted({w.decision_id for w in windows})


def _art(clause: str) -> str:
    return f"6({clause.split('.')[1]})"
