"""Hostile payloads on every input topic: the engine rejects what is invalid and never raises."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from pydantic import BaseModel, ValidationError

from marketban.domain.engine import Engine, Source
from marketban.domain.fastpath import json_bytes
from marketban.domain.models import (
    INPUT_TOPICS,
    AccountLink,
    BanEvent,
    Evidence,
    Execution,
    Holding,
    Order,
)
from tests.hostile import KEY_FIELD, VALID, payloads
from tests.unit.helpers import CAL

MODELS: dict[str, type[BaseModel]] = {
    "bans": BanEvent,
    "accounts": AccountLink,
    "orders": Order,
    "evidence": Evidence,
    "holdings": Holding,
    "executions": Execution,
}


def _valid(topic: str, key: str | None, payload: bytes) -> bool:
    """Whether the contract accepts the record (its model, and the key it must carry)."""
    try:
        value = orjson.loads(payload)
        model = MODELS[topic].model_validate(value)
    except (orjson.JSONDecodeError, ValidationError, RecursionError):
        return False
    return key == getattr(model, KEY_FIELD[topic])


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_every_invalid_record_is_rejected_and_nothing_raises(topic: str) -> None:
    engine = Engine(CAL)

    @settings(max_examples=300, deadline=None)
    @given(payloads(topic))
    def check(item: tuple[str | None, bytes]) -> None:
        key, payload = item
        outputs = engine.handle(topic, key, payload, Source(topic, 0, 0))
        for _topic, _key, value in outputs:
            json_bytes(value)  # every output can be written
        if not _valid(topic, key, payload):
            assert any(t == "rejected" for t, _, _ in outputs), (key, payload[:300])
        elif topic == "orders":
            # A valid order gets its decision (or, repeated, a duplicate's rejection).
            assert [t for t, _, _ in outputs][:1] in (["decisions"], ["rejected"])

    check()


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+14:00",
        "1989-12-31T23:59:59+08:00",
        "3000-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
    ],
)
def test_event_times_outside_the_accepted_years_are_rejected_not_overflowed(at: str) -> None:
    # Found by `make chaos` fuzzing: dates near year 1 or 9999 overflowed in the session lookup.
    engine = Engine(CAL)
    order = {**VALID["orders"], "entered_at": at}
    out = engine.handle("orders", "FA1", orjson.dumps(order), Source("orders", 0, 0))
    assert [t for t, _, _ in out] == ["rejected", "decisions"]
    assert "must lie in the years 1990 to 2999" in out[0][2].error  # type: ignore[union-attr]
    execution = {**VALID["executions"], "executed_at": at}
    out = engine.handle("executions", "FA1", orjson.dumps(execution), Source("executions", 0, 0))
    assert [t for t, _, _ in out] == ["rejected"]
