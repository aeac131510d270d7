"""The msgspec fast path must agree with the pydantic contract it stands in for."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from marketban.domain.engine import Engine, Source
from marketban.domain.fastpath import DecisionRecord, decode_order, json_bytes
from marketban.domain.models import Decision, Order
from marketban.service.replay import LineInput, encode_output, read_line
from tests.unit.helpers import CAL, order

SCENARIOS = Path(__file__).parent.parent / "scenarios"

EDGE_TIMESTAMPS = [
    "2024-05-13T09:30:00+08:00",
    "2024-05-13T09:30:00.019+08:00",
    "2024-05-13T09:30:00.123456789+08:00",
    "2024-05-13T09:30:00Z",
    "2024-05-13t09:30:00z",
    "2024-05-13 09:30:00+08:00",
    "2024-05-13T09:30:00",
    "2024-05-13T09:30+08:00",
    "2024-05-13T24:00:00+08:00",
    "2024-05-13T23:59:60+08:00",
    "2024-02-30T09:30:00+08:00",
    "2024-05-13T09:30:00+0800",
    "2024-05-13T09:30:00+08",
    "2024-05-13T09:30:00-00:00",
    "2024-05-13T09:30:00+24:00",
    "20240513T093000+0800",
    "2024-05-13",
    "1715563800",
]

texts = st.one_of(
    st.text(max_size=3),
    st.text(min_size=126, max_size=130),
    st.sampled_from(["A1", "SO000001", "600000", "B001", "账户", ""]),
)
ints = st.one_of(
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([10**12, 10**12 + 1, 100, 2**62]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just("100"),
)
generated_timestamps = st.builds(
    lambda y, mo, d, sep, h, mi, sec, frac, tz: (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{sec:02d}{'.' + frac if frac else ''}{tz}"
    ),
    st.integers(1, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T", "t", " ", "_"]),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.text("0123456789", max_size=12),
    st.sampled_from(["Z", "z", "+08:00", "-03:30", "", "+0800", "+14:00", "+23:59", "+24:00"]),
)
timestamps = st.one_of(
    generated_timestamps,
    st.sampled_from(EDGE_TIMESTAMPS),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.text(max_size=30),
)
prices = st.one_of(
    st.sampled_from(
        ["10.50", "0", "0.00", "-1", "1e3", "NaN", "Infinity", " 1.0", "1,0", "01.5", "1." * 20]
    ),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.integers(min_value=-(2**62), max_value=2**62),
)
claims = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "clause": st.sampled_from(["6.1", "6.6", "6.8", 6]),
            "reference": st.one_of(st.none(), texts),
        }
    ),
    st.just("6.1"),
)


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "order_id": texts,
    "account_id": texts,
    "exchange": st.sampled_from(["XSHG", "XSHE", "BJSE", "NEEQ", "xshg", ""]),
    "security": texts,
    "side": st.sampled_from(["buy", "sell", "BUY", "hold"]),
    "quantity": ints,
    "price": prices,
    "entered_at": timestamps,
    "broker": texts,
    "exemption": claims,
    "terminal": st.one_of(st.none(), st.fixed_dictionaries({"ip": texts}), st.just([])),
    "unknown_field": texts,
}


@st.composite
def order_payloads(draw: st.DrawFn) -> bytes:
    """A valid order with up to two fields replaced by edge values, or removed."""
    value = order("O1")
    for field in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):
        if draw(st.integers(0, 9)) == 0:
            value.pop(field, None)
        else:
            value[field] = draw(FIELDS[field])
    return orjson.dumps(value)


def _same_order(fast: Any, model: Order) -> None:
    for field in ("order_id", "account_id", "exchange", "security", "side", "quantity", "price"):
        assert getattr(fast, field) == getattr(model, field), field
    assert fast.entered_at == model.entered_at
    assert fast.entered_at.utcoffset() == model.entered_at.utcoffset()
    assert (fast.exemption is None) == (model.exemption is None)
    if fast.exemption is not None and model.exemption is not None:
        assert fast.exemption.to_model() == model.exemption


@settings(max_examples=1500, deadline=None)
@given(order_payloads())
def test_the_fast_path_accepts_only_what_the_order_model_accepts_with_the_same_values(
    payload: bytes,
) -> None:
    fast = decode_order(payload)
    if fast is None:
        return  # the pydantic path decides and words the error
    try:
        model = Order.model_validate(orjson.loads(payload))
    except ValidationError as exc:
        pytest.fail(f"fast path accepted what the contract rejects: {payload!r}: {exc}")
    _same_order(fast, model)


def test_the_fast_path_takes_ordinary_orders() -> None:
    for value in (order("O1"), order("O2", side="sell", exemption={"clause": "6.6"})):
        fast = decode_order(orjson.dumps(value))
        assert fast is not None
        _same_order(fast, Order.model_validate(value))


def test_a_repeated_field_is_read_the_same_way_by_both_paths() -> None:
    text = orjson.dumps(order("O1")).decode()[:-1] + ',"quantity":700}'
    fast = decode_order(text.encode())
    model = Order.model_validate(orjson.loads(text))
    assert fast is not None
    assert fast.quantity == model.quantity == 700


offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))]
)
aware = st.datetimes(timezones=offsets)


@settings(max_examples=500, deadline=None)
@given(
    st.text(min_size=1),
    st.one_of(st.none(), st.text()),
    st.sampled_from(["allow", "block", "allow_exempt"]),
    st.one_of(st.none(), st.sampled_from(["6.1", "6.6", "6.7"])),
    st.lists(st.text()),
    st.text(),
    st.one_of(st.none(), st.dates()),
    st.one_of(st.none(), aware),
)
def test_a_decision_record_serialises_to_the_bytes_of_the_contract_model(
    oid: str,
    person: str | None,
    verdict: Any,
    clause: Any,
    ids: list[str],
    reason: str,
    session: date | None,
    decided_at: datetime | None,
) -> None:
    fields: dict[str, Any] = {
        "order_id": oid,
        "account_id": "A1",
        "person_id": person,
        "verdict": verdict,
        "clause": clause,
        "decision_ids": ids,
        "reason": reason,
        "session": session,
        "decided_at": decided_at,
    }
    record = DecisionRecord(**fields)
    contract = Decision(**fields)
    assert record.model_dump_json() == contract.model_dump_json()
    # What the worker, replay and the bench write: the same bytes whichever path made the record.
    assert json_bytes(record) == json_bytes(contract) == contract.model_dump_json().encode()
    assert record.to_model() == Decision(**fields)


def _parsed_or_raw(raw: bytes) -> bytes | dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    return value if isinstance(value, dict) else raw


def test_the_engine_gives_the_same_outputs_for_bytes_and_parsed_payloads() -> None:
    by_bytes, by_dict = Engine(CAL), Engine(CAL)
    lines = (SCENARIOS / "rules.jsonl").read_bytes().splitlines()
    compared = 0
    for number, line in enumerate(lines, start=1):
        read = read_line(number, line)
        if not isinstance(read, LineInput):
            continue
        raw = read.payload if isinstance(read.payload, bytes) else orjson.dumps(read.payload)
        source = Source(read.topic, 0, number)
        fast = by_bytes.handle(read.topic, read.key, raw, source)
        slow = by_dict.handle(read.topic, read.key, _parsed_or_raw(raw), source)
        assert [encode_output(*o) for o in fast] == [encode_output(*o) for o in slow], number
        compared += 1
    assert compared > 100


EDGE_PRICES = [
    "10.50",
    "0",
    "0.00",
    "-1",
    "1e3",
    "NaN",
    "Infinity",
    " 1.0",
    "1,0",
    "01.5",
    "+1",
    "1abc",
    "1.",
    ".5",
    "١٢",
    "0.001",
    "00",
    "1.2.3",
]


@pytest.mark.parametrize("entered_at", EDGE_TIMESTAMPS)
@pytest.mark.parametrize("price", EDGE_PRICES)
def test_edge_timestamps_and_prices_get_the_contract_verdict(entered_at: str, price: str) -> None:
    value = order("O1") | {"entered_at": entered_at, "price": price}
    fast = decode_order(orjson.dumps(value))
    try:
        model: Order | None = Order.model_validate(value)
    except ValidationError:
        model = None
    if fast is not None:
        assert model is not None, "fast path accepted what the contract rejects"
        _same_order(fast, model)
