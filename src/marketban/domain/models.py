"""The messages of the public contract (spec section 3), as frozen pydantic models.

Strictness is set per field, so a payload validates the same whether it arrives as JSON bytes
(the stream) or as an already-parsed object (replay): integers, strings and booleans must have
their JSON type; dates must be ``YYYY-MM-DD`` strings; timestamps ISO 8601 strings with an offset.
Unknown fields are ignored (spec).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_ID = 128


def _iso_date_text(value: object) -> object:
    if isinstance(value, str) and not _DATE_RE.match(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    if not isinstance(value, str | date):
        raise ValueError("must be a date written YYYY-MM-DD")  # noqa: TRY004 - pydantic wants ValueError
    return value


def _iso_timestamp_text(value: object) -> object:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 timestamp string with an offset")  # noqa: TRY004
    return value


def positive_decimal(value: str) -> str:
    """The value, if it is a finite decimal number above zero; ValueError otherwise."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError("must be a positive decimal number written as a string") from None
    if not number.is_finite() or number <= 0:
        raise ValueError("must be a positive decimal number written as a string")
    return value


Text = Annotated[str, Strict(), Field(min_length=1, max_length=_MAX_ID)]
LongText = Annotated[str, Strict(), Field(max_length=1024)]
Int = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), Field(gt=0, le=10**12)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0, le=10**12)]
Bool = Annotated[bool, Strict()]
IsoDate = Annotated[date, BeforeValidator(_iso_date_text)]
#: Event times the engine accepts: the exchanges opened in December 1990, and beyond 2999 the
#: calendar is a guess anyway. Bounding them keeps every date computed from one (China local day,
#: next trading day, retention horizon) inside what Python's date can hold.
TIMESTAMP_YEARS: Final = range(1990, 3000)


def in_timestamp_range(value: datetime) -> bool:
    """Whether an event time lies in the years the engine accepts (``TIMESTAMP_YEARS``)."""
    return value.year in TIMESTAMP_YEARS


def _timestamp_in_range(value: datetime) -> datetime:
    if not in_timestamp_range(value):
        first, last = TIMESTAMP_YEARS[0], TIMESTAMP_YEARS[-1]
        raise ValueError(f"must lie in the years {first} to {last}")
    return value


Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_iso_timestamp_text), AfterValidator(_timestamp_in_range)
]
PriceText = Annotated[str, Strict(), Field(max_length=32), AfterValidator(positive_decimal)]
Side = Literal["buy", "sell"]
Exchange = Literal["XSHG", "XSHE", "BJSE", "NEEQ"]
Clause = Literal["6.1", "6.2", "6.3", "6.4", "6.5", "6.6", "6.7"]
EvidenceClause = Literal["6.1", "6.2", "6.3", "6.4", "6.5", "6.7"]

_FROZEN = ConfigDict(frozen=True, extra="ignore")

#: Input topics of the spec, without the prefix.
INPUT_TOPICS: Final = ("bans", "accounts", "orders", "evidence", "holdings", "executions")
#: Output topics of the spec, without the prefix.
OUTPUT_TOPICS: Final = ("decisions", "violations", "rejected")


class Measure(BaseModel):
    """One measure of a ban decision: a business or trading ban, for a duration or for life."""

    model_config = _FROZEN

    kind: Literal["trading", "business"]
    years: NonNegativeInt | None = None
    months: NonNegativeInt | None = None
    lifetime: Bool = False
    lifetime_ground: Int | None = None

    @model_validator(mode="after")
    def _duration_or_lifetime(self) -> Measure:
        has_duration = bool(self.years) or bool(self.months)
        if self.lifetime and has_duration:
            raise ValueError(
                "a measure is either for a duration (years/months) or lifetime, not both"
            )
        return self

    @property
    def total_months(self) -> int:
        """The duration in months (0 for a lifetime measure)."""
        return (self.years or 0) * 12 + (self.months or 0)

    def describe(self) -> str:
        """A short human text, e.g. ``trading ban for 5 years``."""
        what = "trading ban" if self.kind == "trading" else "business ban"
        if self.lifetime:
            return f"lifetime {what}"
        parts = []
        if self.years:
            parts.append(f"{self.years} year{'s' if self.years != 1 else ''}")
        if self.months:
            parts.append(f"{self.months} month{'s' if self.months != 1 else ''}")
        return f"{what} for {' '.join(parts) or '0 months'}"


class BanEvent(BaseModel):
    """A lifecycle event of one ban decision (topic ``bans``, key ``decision_id``)."""

    model_config = _FROZEN

    decision_id: Text
    version: Annotated[int, Strict(), Field(ge=0, le=2**53)]
    action: Literal["issue", "amend", "revoke"]
    issuer: Text | None = None
    person_id: Text | None = None
    person_name: LongText | None = None
    measures: Annotated[list[Measure], Field(max_length=16)] = Field(default_factory=list)
    served_on: IsoDate | None = None
    violation_ended_on: IsoDate | None = None
    mitigated: Bool = False
    effective_on: IsoDate | None = None

    @model_validator(mode="after")
    def _required_by_action(self) -> BanEvent:
        if self.action == "issue" and self.person_id is None:
            raise ValueError("an issue event needs person_id")
        return self


class AccountLink(BaseModel):
    """Links a securities account to a person (topic ``accounts``, key ``account_id``).

    ``cash``/``credit``: the account's owner (a later one replaces it). ``controlled`` (R8): a
    person who controls the account besides its owner, as an analyst confirmed; ``revoked``
    removes that link again. ``confirmed_by`` is the analyst marketban wrote it for.
    """

    model_config = _FROZEN

    account_id: Text
    person_id: Text
    kind: Literal["cash", "credit", "controlled"]
    reference: LongText | None = None
    revoked: Annotated[bool, Strict()] = False
    confirmed_by: LongText | None = None


class Terminal(BaseModel):
    """Where an order was entered from."""

    model_config = _FROZEN

    ip: LongText | None = None
    mac: LongText | None = None


class ExemptionClaim(BaseModel):
    """The Art. 6 exception an order claims, and the evidence it relies on."""

    model_config = _FROZEN

    clause: Clause
    reference: Text | None = None


class Order(BaseModel):
    """One order as the gateway saw it (topic ``orders``, key ``account_id``)."""

    model_config = _FROZEN

    order_id: Text
    account_id: Text
    exchange: Exchange
    security: Text
    side: Side
    quantity: PositiveInt
    price: PriceText
    entered_at: Timestamp
    broker: Text
    terminal: Terminal | None = None
    exemption: ExemptionClaim | None = None


class Evidence(BaseModel):
    """What allows an Art. 6 exception other than 6.6 (topic ``evidence``, key ``account_id``)."""

    model_config = _FROZEN

    evidence_id: Text
    clause: EvidenceClause
    account_id: Text
    security: Text | None = None
    side: Side
    max_quantity: PositiveInt
    valid_from: IsoDate
    valid_until: IsoDate
    issued_by: Text
    disclosed_on: IsoDate | None = None
    revoked: Bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Evidence:
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        if self.clause == "6.5" and self.disclosed_on is None:
            raise ValueError("clause 6.5 evidence needs disclosed_on (the pre-ban disclosure date)")
        return self


class Holding(BaseModel):
    """A CSDC holdings snapshot line (topic ``holdings``, key ``account_id``)."""

    model_config = _FROZEN

    account_id: Text
    security: Text
    quantity: NonNegativeInt
    as_of: IsoDate


class Execution(BaseModel):
    """What the market did with an order (topic ``executions``, key ``account_id``)."""

    model_config = _FROZEN

    order_id: Text
    account_id: Text
    security: Text
    side: Side
    status: Literal["fill", "cancel", "reject"]
    quantity: NonNegativeInt
    executed_at: Timestamp
    broker: Text

    @model_validator(mode="after")
    def _fill_has_quantity(self) -> Execution:
        if self.status == "fill" and self.quantity == 0:
            raise ValueError("a fill needs a positive quantity")
        return self


# ---- outputs -----------------------------------------------------------------------------------

Verdict = Literal["allow", "block", "allow_exempt"]


class Decision(BaseModel):
    """The one decision of an order (topic ``decisions``, key ``account_id``)."""

    model_config = _FROZEN

    order_id: str
    account_id: str
    person_id: str | None
    verdict: Verdict
    clause: Clause | None
    decision_ids: list[str]
    reason: str
    session: date | None
    decided_at: datetime | None


class Violation(BaseModel):
    """A breach for Art. 14 follow-up (topic ``violations``, key ``account_id``)."""

    model_config = _FROZEN

    violation_id: str
    kind: Literal["blocked_attempt", "executed_breach", "suspected_proxy_trading"]
    severity: Literal["medium", "high"]
    account_id: str
    person_id: str | None
    order_id: str | None
    decision_ids: list[str]
    broker: str | None
    session: date | None
    detected_at: datetime | None
    detail: str


class Rejected(BaseModel):
    """An input that could not be read or was invalid (topic ``rejected``, key as received)."""

    model_config = _FROZEN

    source_topic: str
    partition: int | None
    offset: int | None
    line: int | None = None
    key: str | None
    payload: str
    payload_truncated: bool = False
    error: str
