"""Hostile payloads for every input topic (hypothesis strategies), and a bulk generator.

Used by the in-process property test (tests/unit/test_hostile_input.py) and by the fuzz run on
the broker (tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketban.domain.models import INPUT_TOPICS

VALID: dict[str, dict[str, Any]] = {
    "bans": {
        "decision_id": "FZ-1",
        "version": 1,
        "action": "issue",
        "issuer": "CSRC",
        "person_id": "FP1",
        "person_name": "张三",
        "measures": [{"kind": "trading", "years": 5}],
        "served_on": "2024-05-10",
        "violation_ended_on": "2023-11-30",
        "mitigated": False,
        "effective_on": None,
    },
    "accounts": {"account_id": "FA1", "person_id": "FP1", "kind": "cash"},
    "orders": {
        "order_id": "FO1",
        "account_id": "FA1",
        "exchange": "XSHG",
        "security": "600000",
        "side": "sell",
        "quantity": 100,
        "price": "10.50",
        "entered_at": "2024-05-13T10:00:00+08:00",
        "broker": "B001",
        "exemption": {"clause": "6.6", "reference": None},
    },
    "evidence": {
        "evidence_id": "FE1",
        "clause": "6.3",
        "account_id": "FA1",
        "security": None,
        "side": "sell",
        "max_quantity": 1000,
        "valid_from": "2024-05-01",
        "valid_until": "2025-12-31",
        "issued_by": "court",
        "disclosed_on": None,
        "revoked": False,
    },
    "holdings": {"account_id": "FA1", "security": "600000", "quantity": 500, "as_of": "2024-05-09"},
    "executions": {
        "order_id": "FO1",
        "account_id": "FA1",
        "security": "600000",
        "side": "sell",
        "status": "fill",
        "quantity": 100,
        "executed_at": "2024-05-13T10:00:01+08:00",
        "broker": "B001",
    },
}
KEY_FIELD = {t: "decision_id" if t == "bans" else "account_id" for t in INPUT_TOPICS}

_BOUNDARY_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        2**31,
        2**53,
        2**53 + 1,
        2**63,
        -(2**63),
        2**64,
        10**12,
        10**12 + 1,
        1e308,
        -0.0,
        0.5,
    ]
)
_ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.just(""),
    st.just("x" * 100_000),  # huge string
    st.just("2024-05-13T10:00:00"),  # timestamp without offset
    st.just("2024-05-13"),
    st.just("2024-02-30"),
    st.just("9999-12-31T23:59:59.9999999+14:00"),
    st.just("9999-12-31T23:59:59-14:00"),
    st.just("0001-01-01T00:00:00+14:00"),
    st.just("1989-12-31T23:59:59+08:00"),
    st.just("NaN"),
    st.just("\u0000\ud800"),
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), _BOUNDARY_NUMBERS, st.integers(), st.floats(), _ODD_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _dumps(value: object) -> bytes:
    """JSON text of ``value``; what orjson refuses (lone surrogates, 65-bit ints) via json."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def _deep(depth: int) -> bytes:
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def _mutated(draw: st.DrawFn, topic: str) -> tuple[str | None, bytes]:
    """A valid record of ``topic`` with fields replaced, dropped or added."""
    value = dict(VALID[topic])
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            value[name] = draw(_JSON)
        elif action == "drop":
            value.pop(name, None)
        else:
            value[draw(st.text(min_size=1, max_size=10))] = draw(_JSON)
    key = value.get(KEY_FIELD[topic])
    if not (isinstance(key, str) and draw(st.booleans())):
        key = draw(st.none() | st.text(max_size=12))
    # As the worker reads a Kafka key: bytes decoded with errors="replace" (no lone surrogates).
    key = key.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if key else key
    return key, _dumps(value)


@st.composite
def _duplicate_key(draw: st.DrawFn, topic: str) -> tuple[str | None, bytes]:
    """The valid record's JSON with one of its keys repeated with another value."""
    body = orjson.dumps(VALID[topic])
    name = draw(st.sampled_from(sorted(VALID[topic])))
    extra = _dumps(draw(_JSON))
    key = VALID[topic][KEY_FIELD[topic]]
    return key, body[:-1] + b',"' + name.encode() + b'":' + extra + b"}"


#: Kafka refuses a record above its message size (1 MB by default: producer and broker), so no
#: worker ever reads one; the nested huge strings above can add up to more than that.
MAX_RECORD_BYTES = 900_000


def payloads(topic: str) -> st.SearchStrategy[tuple[str | None, bytes]]:
    """(key, payload) pairs for ``topic``: random bytes, broken text, wrong shapes, edge values."""
    keys = st.none() | st.text(max_size=12)
    return st.one_of(
        st.tuples(keys, st.binary(max_size=200)),
        st.tuples(keys, st.binary(max_size=60).map(lambda b: b'{"x": "\xff\xfe' + b + b'"}')),
        st.tuples(keys, _JSON.map(_dumps)),
        st.tuples(keys, st.integers(100, 100_000).map(_deep)),
        _mutated(topic),
        _duplicate_key(topic),
    ).filter(lambda item: len(item[1]) <= MAX_RECORD_BYTES)


def generate_payloads(topic: str, count: int) -> list[tuple[str | None, bytes]]:
    """``count`` payloads for ``topic``, drawn by hypothesis (no shrinking: this is a generator)."""
    found: list[tuple[str | None, bytes]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=["generate"],
    )
    @given(payloads(topic))
    def draw(item: tuple[str | None, bytes]) -> None:
        found.append(item)

    draw()
    return found[:count]
