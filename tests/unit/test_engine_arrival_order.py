"""R5 and the decision contract when inputs of one account arrive out of produce order.

Orders and executions travel on different topics, so a consumer can see a fill before its order.
"""

from __future__ import annotations

from typing import Any

from tests.unit.helpers import ban, feed, link, new_engine, order, verdicts


def fill(oid: str, qty: int = 100, at: str = "2024-05-13T10:00:02+08:00") -> dict[str, Any]:
    return {
        "order_id": oid,
        "account_id": "A1",
        "security": "600000",
        "side": "buy",
        "status": "fill",
        "quantity": qty,
        "executed_at": at,
        "broker": "B001",
    }


def test_an_order_consumed_after_its_fill_still_gets_exactly_one_decision() -> None:
    engine = new_engine()
    feed(engine, ("bans", ban()), ("accounts", link()))
    early = feed(engine, ("executions", fill("O1")))
    late = feed(engine, ("orders", order("O1")))
    assert [v.kind for t, _, v in early if t == "violations"] == ["executed_breach"]  # type: ignore[attr-defined]
    assert verdicts(late) == {"O1": "block"}
    assert not [v for t, _, v in late if t == "rejected"]


def test_a_second_copy_of_a_decided_order_is_still_rejected_as_duplicate() -> None:
    engine = new_engine()
    feed(engine, ("bans", ban()), ("accounts", link()))
    feed(engine, ("orders", order("O1")))
    again = feed(engine, ("orders", order("O1")))
    assert verdicts(again) == {}
    assert next(v.error for t, _, v in again if t == "rejected").startswith("duplicate order_id O1")  # type: ignore[attr-defined]


def test_a_fill_seen_before_its_order_raises_its_breach_only_once() -> None:
    engine = new_engine()
    feed(engine, ("bans", ban()), ("accounts", link()))
    feed(engine, ("executions", fill("O1")))
    feed(engine, ("orders", order("O1")))
    later = feed(engine, ("executions", fill("O1", at="2024-05-13T10:00:05+08:00")))
    assert [v for t, _, v in later if t == "violations"] == []
