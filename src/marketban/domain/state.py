"""The engine's state and records: what every rule reads and writes, and what it emits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final, Literal

from msgspec import Struct
from pydantic import BaseModel, Field

from marketban.domain.bans import BanRecord, BanView, BanWindows
from marketban.domain.models import AccountLink, Evidence, ExemptionClaim, Rejected, Side, Verdict
from marketban.domain.proxy import SentUses, TerminalState
from marketban.domain.wire import DecodeError, payload_text

#: Day orders lapse at the close; tracked orders are kept this long for late execution reports.
ORDER_RETENTION = timedelta(days=7)


Payload = bytes | dict[str, Any]


#: A decision on the fast path and R8's internal records are msgspec structs; the rest pydantic.
Output = tuple[str, str | None, BaseModel | Struct]


#: R8's hops between the task of an account and the task of a terminal: outputs that come back
#: as inputs (the stream re-keys them through its own topics; ``Engine.run`` takes them at once).
ROUTED: Final = frozenset({"terminal-uses", "proxy-suspicions"})


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


class Recording(MutableMapping[str, BanRecord]):
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


class Scratch(MutableMapping[str, AccountState]):
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


def read_ahead(mapping: object, keys: list[str]) -> None:
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


def require_key(key: str | None, expected: str, field_name: str) -> None:
    """Refuse a record whose key is not the field its partition is chosen by."""
    if key != expected:
        raise DecodeError(
            f"message key {key!r} is not its {field_name} {expected!r}: records must be keyed by "
            f"{field_name} so that each one reaches the partition that holds its state"
        )
