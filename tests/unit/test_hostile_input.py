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
from tests.hostile import KEY_FIELD, payloads
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
