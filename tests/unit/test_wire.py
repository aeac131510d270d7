"""Bad input gets a clear error naming the field, and is never dropped silently."""

from __future__ import annotations

import json

import pytest

from marketban.domain.engine import Source
from marketban.domain.wire import MAX_PAYLOAD_BYTES
from tests.unit.helpers import ban, feed, link, new_engine, order


def handle(topic: str, key: str | None, payload):
    return new_engine().handle(topic, key, payload, Source(topic, partition=3, offset=42))


@pytest.fixture(params=["dict", "bytes"])
def as_payload(request):
    """Replay hands the engine parsed objects, the stream bytes: both must read the same."""
    return (lambda v: v) if request.param == "dict" else (lambda v: json.dumps(v).encode())


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"quantity": "100"}, "quantity"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"price": "-1"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"entered_at": "2024-05-13T10:00:00"}, "entered_at"),
        ({"entered_at": 1715565600}, "entered_at"),
        ({"side": "short"}, "side"),
        ({"exemption": {"clause": "6.9"}}, "exemption.clause"),
        ({"order_id": ""}, "order_id"),
    ],
)
def test_an_invalid_order_is_rejected_naming_the_field_and_blocked(
    patch, field, as_payload
) -> None:
    value = {**order("O1", "A1"), **patch}
    out = handle("orders", "A1", as_payload(value))
    rejected = [v for t, _, v in out if t == "rejected"]
    assert len(rejected) == 1
    assert f"field '{field}'" in rejected[0].error
    where = (rejected[0].partition, rejected[0].offset, rejected[0].source_topic)
    assert where == (3, 42, "orders")
    decisions = [v for t, _, v in out if t == "decisions"]
    if value["order_id"]:
        assert [d.verdict for d in decisions] == ["block"]
        assert decisions[0].reason.startswith("invalid order:")
    else:
        assert decisions == []


def test_a_missing_field_is_named(as_payload) -> None:
    value = order("O1", "A1")
    del value["broker"]
    (rejected, _decision) = handle("orders", "A1", as_payload(value))
    assert "field 'broker': Field required" in rejected[2].error


def test_unknown_fields_are_ignored(as_payload) -> None:
    out = handle("orders", "A1", as_payload({**order("O1", "A1"), "venue_extra": {"x": 1}}))
    assert [t for t, _, _ in out] == ["decisions"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xff\xfe not utf-8", "not valid UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"{" * 5000, "not valid UTF-8 JSON"),
        (b'{"a": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "the limit is"),
    ],
)
def test_unreadable_payloads_are_rejected_with_the_payload_text(payload, error) -> None:
    for topic in ("orders", "bans", "accounts", "evidence", "holdings", "executions"):
        ((t, key, rejected),) = handle(topic, "K", payload)
        assert t == "rejected"
        assert key == "K"
        assert error in rejected.error
        assert rejected.payload  # the raw text travels with the rejection (truncated if huge)


def test_a_message_without_a_value_is_rejected_as_such_and_its_order_blocked() -> None:
    for topic in ("orders", "bans", "accounts", "evidence", "holdings", "executions"):
        (t, key, rejected), *rest = handle(topic, "K", b"")
        assert (t, key) == ("rejected", "K")
        assert "has no value (null or empty)" in rejected.error
        assert rest == []  # no order_id to block: nothing for a gateway to wait on


def test_a_record_keyed_by_something_else_is_refused_so_state_stays_partitioned() -> None:
    out = handle("accounts", "A2", {"account_id": "A1", "person_id": "P1", "kind": "cash"})
    assert "is not its account_id" in out[0][2].error


def test_a_deeply_nested_valid_json_object_is_rejected_not_crashing() -> None:
    head = b'{"order_id": "O1", "account_id": "A1", "terminal": '
    deep = head + b'{"a": ' * 200 + b"1" + b"}" * 201
    out = handle("orders", "A1", deep)
    assert [t for t, _, _ in out] == ["rejected", "decisions"]


def test_a_valid_order_is_decided_the_same_from_bytes_and_from_a_dict() -> None:
    value = order("O1", "A1", exemption={"clause": "6.1", "reference": "EV-1"})
    ((_, _, from_dict),) = handle("orders", "A1", value)
    ((_, _, from_bytes),) = handle("orders", "A1", json.dumps(value).encode())
    assert from_dict.model_dump_json() == from_bytes.model_dump_json()


def test_a_key_mismatch_is_refused_on_the_bytes_path_too() -> None:
    out = handle("orders", "A2", json.dumps(order("O1", "A1")).encode())
    assert [t for t, _, _ in out] == ["rejected", "decisions"]
    assert "is not its account_id" in out[0][2].error


#: A payload as a gateway may write it: spaces, non-ASCII unescaped, an exponent, a key twice.
_AS_WRITTEN = (
    '{ "order_id" : "O1",  "account_id": "A1", "broker": "券商", "quantity": -15e-1, '
    '"quantity": -1, "exchange": "XSHG" }'
)


@pytest.mark.parametrize("topic", ["orders", "accounts", "evidence", "holdings", "executions"])
def test_a_rejection_carries_the_payload_exactly_as_it_arrived(topic) -> None:
    out = handle(topic, "A1", _AS_WRITTEN.encode())
    assert [v.payload for t, _, v in out if t == "rejected"] == [_AS_WRITTEN]


def test_a_repeated_orders_rejection_carries_its_own_payload_text() -> None:
    engine = new_engine()
    feed(engine, ("bans", ban()), ("accounts", link("A1", "P1")))
    first = json.dumps(order("O1", "A1")).encode()
    again = json.dumps(order("O1", "A1"), indent=1, ensure_ascii=False).encode()
    engine.handle("orders", "A1", first, Source("orders", 0, 1))
    out = engine.handle("orders", "A1", again, Source("orders", 0, 2))
    assert [(t, v.payload) for t, _, v in out] == [("rejected", again.decode())]
