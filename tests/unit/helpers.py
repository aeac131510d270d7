"""Builders of input messages for engine tests, and stand-ins for the worker's parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marketban.domain.calendars import default_calendar
from marketban.domain.engine import INTERNAL_OUTPUTS, Engine, Output, Source

CAL = default_calendar()


def ban(
    did: str = "D1",
    person: str = "P1",
    *,
    version: int = 1,
    action: str = "issue",
    measures: list[dict[str, Any]] | None = None,
    served_on: str | None = "2024-05-10",
    ended: str | None = "2023-11-30",
    mitigated: bool = False,
    effective_on: str | None = None,
) -> dict[str, Any]:
    return {
        "decision_id": did,
        "version": version,
        "action": action,
        "issuer": "CSRC",
        "person_id": person,
        "person_name": "张三",
        "measures": [{"kind": "trading", "years": 5}] if measures is None else measures,
        "served_on": served_on,
        "violation_ended_on": ended,
        "mitigated": mitigated,
        "effective_on": effective_on,
    }


def order(
    oid: str,
    account: str = "A1",
    *,
    side: str = "buy",
    qty: int = 100,
    at: str = "2024-05-13T10:00:00+08:00",
    security: str = "600000",
    exemption: dict[str, Any] | None = None,
    mac: str | None = None,
    ip: str | None = None,
    broker: str = "B001",
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "order_id": oid,
        "account_id": account,
        "exchange": "XSHG",
        "security": security,
        "side": side,
        "quantity": qty,
        "price": "10.50",
        "entered_at": at,
        "broker": broker,
    }
    if mac is not None or ip is not None:
        value["terminal"] = {k: v for k, v in (("mac", mac), ("ip", ip)) if v is not None}
    if exemption is not None:
        value["exemption"] = exemption
    return value


def link(account: str = "A1", person: str = "P1") -> dict[str, Any]:
    return {"account_id": account, "person_id": person, "kind": "cash"}


def controlled(
    account: str, person: str, reference: str = "V1", *, revoked: bool = False
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "account_id": account, "person_id": person, "kind": "controlled", "reference": reference,
    }  # fmt: skip
    if revoked:
        value["revoked"] = True
    return value


def key_of(topic: str, value: dict[str, Any]) -> str:
    return str(value["decision_id"] if topic == "bans" else value["account_id"])


def feed(engine: Engine, *messages: tuple[str, dict[str, Any]]) -> list[Output]:
    out: list[Output] = []
    for topic, value in messages:
        outputs = engine.run(topic, key_of(topic, value), value, Source(topic))
        out.extend(o for o in outputs if o[0] not in INTERNAL_OUTPUTS)
    return out


def verdicts(outputs: list[Output]) -> dict[str, str]:
    return {v.order_id: v.verdict for t, _, v in outputs if t == "decisions"}  # type: ignore[attr-defined]


def new_engine() -> Engine:
    return Engine(CAL)


def holding(
    account: str = "A1", security: str = "600000", *, qty: int = 1000, as_of: str = "2024-05-10"
) -> dict[str, Any]:
    return {"account_id": account, "security": security, "quantity": qty, "as_of": as_of}


@dataclass
class DeciderHealthStub:
    """A decider's health as the metrics read it (``DeciderHealth``)."""

    hanging: dict[int, int] = field(default_factory=dict)
    failing: float = 0.0
    layout_errors: dict[str, int] = field(default_factory=dict)

    def fetch_failing_for(self) -> float:
        return self.failing
