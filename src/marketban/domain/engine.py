"""The decision engine: one input event in, the decisions/violations/rejections it causes out.

The same engine runs over plain dicts (``marketban replay``, tests) and over a task's store (the
decider): its state lives in mappings (``marketban.domain.state.State``) and every change is
written back with ``m[key] = v``, which is what marks a key for the task's changelog. Time comes
only from the events (spec R6). The rules live one module each in ``marketban.domain.rules``
(orders R3/R4, executions R5, reference data and bans, terminals R8); this module is their entry
point: dispatch by topic, the fail-closed path, dry runs.
A ban change also leaves as a ``ban-windows`` output (what the decision now means, for the
register); replay and audit ignore those, the stream publishes them.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from marketban.domain.bans import BanBook, BanRecord, BanWindows
from marketban.domain.calendars import MarketCalendar
from marketban.domain.fastpath import decode_order, json_bytes
from marketban.domain.models import Order, Violation
from marketban.domain.proxy import ProxyConfig, SentUses, decode_use, decode_uses_bytes
from marketban.domain.rules.executions import ExecutionRules
from marketban.domain.rules.orders import CLAUSE_NAMES
from marketban.domain.rules.reference import ReferenceRules
from marketban.domain.state import (
    INTERNAL_OUTPUTS,
    ORDER_RETENTION,
    ROUTED,
    AccountState,
    BanOutcome,
    Controllers,
    OrderTrack,
    Output,
    Payload,
    Raised,
    Recording,
    Scratch,
    Source,
    State,
    read_ahead,
    rejected_output,
)
from marketban.domain.wire import MAX_PAYLOAD_BYTES, DecodeError, parse_object, validate

__all__ = [
    "CLAUSE_NAMES",
    "INTERNAL_OUTPUTS",
    "ORDER_RETENTION",
    "ROUTED",
    "AccountState",
    "BanOutcome",
    "Controllers",
    "Engine",
    "OrderTrack",
    "Output",
    "Payload",
    "Raised",
    "Source",
    "State",
    "rejected_output",
]


class Engine(ReferenceRules, ExecutionRules):
    """Applies input events to the state and returns the output records they cause.

    Its rules live by rule in ``marketban.domain.rules``; this is the entry point they share.
    """

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
        self._bans_written = Recording(self.state.bans)
        self.book = BanBook(calendar, self._bans_written, self._changed.append)

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
                read_ahead(self.state.terminals, [use.terminal for use in uses])
                return [o for use in uses for o in self._on_terminal_use(use, now)]
        try:
            obj = parse_object(payload)
        except DecodeError as exc:
            return [rejected_output(source, key, payload, str(exc))]
        try:
            if topic == "orders":
                return self._on_order(key, obj, payload, source, now)
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
        read_ahead(self.state.links, [account for account, _ in orders])
        sent = self._sent
        read_ahead(
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
                return self._invalid_order(key, obj, payload, source, error)
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
            accounts=Scratch(self.state.accounts),
            controllers=self.state.controllers,
        )
        engine = Engine(self.calendar, scratch, self.proxy)
        raw = order.model_dump(mode="json")
        outputs = engine._decide(order.account_id, order, raw, Source(topic="check"), None)
        return [o for o in outputs if o[0] not in ROUTED]
