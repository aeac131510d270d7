"""The worker's last resort for an input the engine failed on: reject it, block an order."""

from __future__ import annotations

import orjson
import pytest

from marketban.domain.engine import Engine, Source
from tests.unit.helpers import CAL, feed, link, order


def test_an_order_the_engine_failed_on_is_rejected_and_blocked() -> None:
    payload = orjson.dumps(order("O1", "A1"))
    out = Engine(CAL).fail_closed("orders", "A1", payload, Source("orders", 2, 9), "boom")
    assert [t for t, _, _ in out] == ["rejected", "decisions"]
    decision = out[1][2]
    assert (decision.order_id, decision.verdict) == ("O1", "block")  # type: ignore[union-attr]
    assert out[0][2].offset == 9  # type: ignore[union-attr]


def test_fail_closed_still_rejects_when_the_block_decision_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = Engine(CAL)

    def broken(*_: object) -> None:
        raise TypeError("cannot build")

    monkeypatch.setattr(engine, "_invalid_order", broken)
    payload = orjson.dumps(order("O1", "A1"))
    out = engine.fail_closed("orders", "A1", payload, Source("orders", 0, 1), "boom")
    assert [t for t, _, _ in out] == ["rejected"]
    assert "cannot build" in out[0][2].error  # type: ignore[union-attr]


def test_a_mis_keyed_invalid_order_is_blocked_without_reading_another_partitions_state() -> None:
    engine = Engine(CAL)
    feed(engine, ("accounts", link("A1", "P1")))
    bad = {**order("O1", "A1"), "quantity": "many"}
    keyed = engine.handle("orders", "A1", orjson.dumps(bad), Source("orders", 0, 1))
    mis_keyed = engine.handle("orders", "B9", orjson.dumps(bad), Source("orders", 1, 1))
    assert keyed[1][2].person_id == "P1"  # type: ignore[union-attr]
    # In the worker, A1's link lives in A1's partition, not in the one "B9" hashes to.
    assert mis_keyed[1][2].person_id is None  # type: ignore[union-attr]
    assert mis_keyed[1][2].verdict == "block"  # type: ignore[union-attr]
