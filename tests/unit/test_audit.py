"""The audit's comparison, on records built here (the Kafka reading is tested on the broker)."""

from __future__ import annotations

from typing import Any

import orjson

from marketban.domain.engine import Engine, Source
from marketban.domain.fastpath import json_bytes
from marketban.service.audit import Record, audit, replay_order
from tests.unit.helpers import CAL, ban, key_of, link, order

PREFIX = "p."


def _inputs() -> list[Record]:
    """A banned person's account, a free account, their orders, and one malformed order."""
    messages: list[tuple[str, Any]] = [
        ("bans", ban()),
        ("accounts", link("A1", "P1")),
        ("orders", order("O1", "A1")),  # blocked: a violation too
        ("orders", order("O2", "A2")),  # allowed: nobody is linked
        ("orders", b"{not json"),
    ]
    records = []
    for seq, (topic, value) in enumerate(messages):
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        key = "A2" if isinstance(value, bytes) else key_of(topic, value)
        records.append(Record(topic, 0, seq, key, raw, timestamp_ms=1000 + seq, seq=seq))
    return records


def _processor_outputs(inputs: list[Record]) -> list[Record]:
    """What a correct processor writes: replay's outputs, stamped with its own processing time."""
    engine = Engine(CAL)
    out: list[Record] = []
    for r in inputs:
        source = Source(topic=f"{PREFIX}{r.topic}", partition=r.partition, offset=r.offset)
        for topic, key, value in engine.handle(r.topic, r.key, r.value, source):
            data = orjson.loads(json_bytes(value))
            for stamp in ("decided_at", "detected_at"):
                if stamp in data:
                    data[stamp] = "2030-01-01T00:00:00+00:00"
            out.append(Record(topic, 0, len(out), key, orjson.dumps(data)))
    return out


def _report(outputs: list[Record]) -> dict[str, Any]:
    return audit(Engine(CAL), PREFIX, _inputs(), outputs).as_dict()


def test_a_correct_processor_passes_with_every_problem_at_zero() -> None:
    report = _report(_processor_outputs(_inputs()))
    assert report["ok"]
    assert set(report["problems"].values()) == {0}
    assert report["inputs"] == {"accounts": 1, "bans": 1, "orders": 3}
    assert report["outputs"] == {"decisions": 2, "rejected": 1, "violations": 1}
    assert report["ordering"] == "seq"


def _without(outputs: list[Record], topic: str, nth: int = 0) -> list[Record]:
    hits = [i for i, r in enumerate(outputs) if r.topic == topic]
    return [r for i, r in enumerate(outputs) if i != hits[nth]]


def _twice(outputs: list[Record], topic: str) -> list[Record]:
    return [*outputs, next(r for r in outputs if r.topic == topic)]


def test_a_lost_decision_is_an_order_without_decision_in_its_partition() -> None:
    report = _report(_without(_processor_outputs(_inputs()), "decisions"))
    assert not report["ok"]
    assert report["problems"]["orders_without_decision"] == 1
    assert report["partitions"] == {"orders[0]": {"orders_without_decision": 1}}
    assert "order O1 has no decision" in report["examples"]["orders_without_decision"][0]


def test_a_decision_written_twice_is_an_order_with_several_decisions() -> None:
    report = _report(_twice(_processor_outputs(_inputs()), "decisions"))
    assert report["problems"]["orders_with_several_decisions"] == 1
    assert report["problems"]["differing"] == 0


def test_a_violation_written_twice_is_a_duplicated_violation() -> None:
    report = _report(_twice(_processor_outputs(_inputs()), "violations"))
    assert report["problems"]["violations_duplicated"] == 1


def test_a_malformed_input_without_its_rejection_is_unaccounted() -> None:
    report = _report(_without(_processor_outputs(_inputs()), "rejected"))
    assert report["problems"]["inputs_unaccounted"] == 1
    assert "p.orders[0]@4" in report["examples"]["inputs_unaccounted"][0]


def test_a_lost_violation_and_a_changed_verdict_are_differences() -> None:
    outputs = _without(_processor_outputs(_inputs()), "violations")
    changed = []
    for r in outputs:
        data = orjson.loads(r.value)
        if r.topic == "decisions" and data["order_id"] == "O2":
            data["verdict"] = "block"
        changed.append(Record(r.topic, r.partition, r.offset, r.key, orjson.dumps(data)))
    report = _report(changed)
    assert report["problems"]["differing"] == 2
    assert report["problems"]["orders_without_decision"] == 0


def test_without_sequence_headers_replay_follows_timestamps_but_keeps_each_partition_in_order() -> (
    None
):
    a0 = Record("orders", 0, 0, "A", b"", timestamp_ms=50)
    a1 = Record("orders", 0, 1, "A", b"", timestamp_ms=10)  # a producer's clock stepped back
    b0 = Record("bans", 1, 0, "D", b"", timestamp_ms=20)
    e0 = Record("executions", 0, 0, "A", b"", timestamp_ms=20)
    ordered, how = replay_order([a1, e0, a0, b0])
    assert how == "timestamp"
    assert ordered.index(a0) < ordered.index(a1)
    assert ordered.index(b0) < ordered.index(e0)  # same millisecond: reference data first


def test_sequence_headers_order_the_replay_across_topics() -> None:
    later = Record("orders", 0, 0, "A", b"", timestamp_ms=1, seq=2)
    first = Record("bans", 0, 0, "D", b"", timestamp_ms=9, seq=1)
    assert replay_order([later, first]) == ([first, later], "seq")
