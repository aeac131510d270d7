"""The order hot path without pydantic: msgspec structs that mirror the contract's models.

Nearly every message is an order, and nearly every order is valid. Validating it with the
pydantic ``Order`` model and building and serialising a pydantic ``Decision`` cost about 11 of the
engine's 15 µs per order (docs/benchmarks.md); these structs do the same in about 2.

The pydantic models stay the contract. The rule that keeps the two honest: ``decode_order``
accepts a payload only if ``Order`` would accept it with the same values — anything it does not
accept (or is unsure of) goes the pydantic way, which also words the rejection. Property tests
(tests/unit/test_fastpath.py) check both directions on generated payloads, and that a
``DecisionRecord`` serialises to the bytes the pydantic ``Decision`` gives.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated

import msgspec
from msgspec import Meta, Struct
from pydantic import BaseModel

from marketban.domain.models import (
    Clause,
    Decision,
    Exchange,
    ExemptionClaim,
    Side,
    Verdict,
    in_timestamp_range,
    positive_decimal,
)

_Text = Annotated[str, Meta(min_length=1, max_length=128)]
_LongText = Annotated[str, Meta(max_length=1024)]


class _TerminalWire(Struct, frozen=True):
    ip: _LongText | None = None
    mac: _LongText | None = None


class ClaimWire(Struct, frozen=True):
    """``ExemptionClaim`` as decoded on the fast path."""

    clause: Clause
    reference: _Text | None = None

    def to_model(self) -> ExemptionClaim:
        """The contract's model of this claim."""
        return ExemptionClaim(clause=self.clause, reference=self.reference)


class OrderWire(Struct, frozen=True):
    """``Order`` as decoded on the fast path: the same fields, types and bounds."""

    order_id: _Text
    account_id: _Text
    exchange: Exchange
    security: _Text
    side: Side
    quantity: Annotated[int, Meta(gt=0, le=10**12)]
    price: Annotated[str, Meta(max_length=32)]
    entered_at: datetime
    broker: _Text
    terminal: _TerminalWire | None = None
    exemption: ClaimWire | None = None


_ORDER = msgspec.json.Decoder(OrderWire)
# msgspec rounds fractional seconds beyond microseconds, pydantic truncates them: a timestamp with
# more than six digits after the point (or anything that looks like one) takes the pydantic way.
_SUB_MICROSECOND = re.compile(rb"\.\d{7}")


def decode_order(payload: bytes) -> OrderWire | None:
    """The order in ``payload`` if it is valid beyond doubt; None sends it the pydantic way."""
    if _SUB_MICROSECOND.search(payload):
        return None
    try:
        order = _ORDER.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None  # (msgspec recurses even to skip an unknown field nested 2,000 deep)
    if order.entered_at.tzinfo is None or not in_timestamp_range(order.entered_at):
        return None  # pydantic words these rejections (an offset, and the years accepted)
    return order if _good_price(order.price) else None


@lru_cache(maxsize=1 << 16)
def _good_price(price: str) -> bool:
    # Prices repeat (a few ticks around each security's last trade), so the contract's own check
    # is remembered: 0.1 us a lookup against 0.5 us for the Decimal it builds.
    try:
        positive_decimal(price)
    except ValueError:
        return False
    return True


class DecisionRecord(Struct, frozen=True):
    """``Decision`` as the engine emits it on the fast path; same fields, same JSON."""

    order_id: str
    account_id: str
    person_id: str | None
    verdict: Verdict
    clause: Clause | None
    decision_ids: list[str]
    reason: str
    session: date | None
    decided_at: datetime | None

    def model_dump_json(self) -> str:
        """The record as JSON text, as ``Decision.model_dump_json`` writes it."""
        return _ENCODER.encode(self).decode()

    def to_model(self) -> Decision:
        """The contract's model of this decision."""
        return Decision.model_validate(msgspec.structs.asdict(self))


_ENCODER = msgspec.json.Encoder()


def json_bytes(value: BaseModel | Struct) -> bytes:
    """An output record's JSON as bytes, without a detour through ``str`` (the hot path's end)."""
    if isinstance(value, Struct):
        return _ENCODER.encode(value)
    return value.__pydantic_serializer__.to_json(value)
