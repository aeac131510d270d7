"""The audit's comparison, on records built here (the Kafka reading is tested on the broker)."""

from __future__ import annotations

from typing import Any

import orjson

from marketban.decider.ordering import task_records
from marketban.domain.engine import INTERNAL_OUTPUTS, Engine, Source
from marketban.domain.fastpath import json_bytes
from marketban.service.audit import Record, audit
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
        records.append(Record(topic, 0, seq, key, raw, timestamp_ms=1000 + seq))
    return records


def _processor_outputs(inputs: list[Record]) -> list[Record]:
    """What a correct processor writes: replay's outputs, stamped with its own processing time."""
    engine = Engine(CAL)
    out: list[Record] = []
    for r in inputs:
        source = Source(topic=f"{PREFIX}{r.topic}", partition=r.partition, offset=r.offset)
        for topic, key, value in engine.handle(r.topic, r.key, r.value, source):
            if topic in INTERNAL_OUTPUTS:
                continue
            data = orjson.loads(json_bytes(value))
            for stamp in ("decided_at", "detected_at"):
                if stamp in data:
                    data[stamp] = "2030-01-01T00:00:00+00:00"
            out.append(Record(topic, 0, len(out), key, orjson.dumps(data)))
    return out


def _report(outputs: list[Record]) -> dict[str, Any]:
    return audit(lambda: Engine(CAL), PREFIX, 1, _inputs(), outputs).as_dict()


def test_a_correct_processor_passes_with_every_problem_at_zero() -> None:
    report = _report(_processor_outputs(_inputs()))
    assert report["ok"]
    assert set(report["problems"].values()) == {0}
    assert report["inputs"] == {"accounts": 1, "bans": 1, "orders": 3}
    assert report["outputs"] == {"decisions": 2, "rejected": 1, "violations": 1}
    assert report["tasks"] == 1


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


def test_a_task_takes_its_partition_of_each_account_topic_and_all_of_bans_in_merge_order() -> None:
    a0 = Record("orders", 0, 0, "A", b"", timestamp_ms=50)
    a1 = Record("orders", 0, 1, "A", b"", timestamp_ms=60)
    other = Record("orders", 1, 0, "B", b"", timestamp_ms=5)  # task 1's
    b1 = Record("bans", 1, 0, "D", b"", timestamp_ms=20)  # every task's
    e0 = Record("executions", 0, 0, "A", b"", timestamp_ms=20)
    ordered = task_records([a1, e0, other, a0, b1], 0)
    assert ordered == [b1, e0, a0, a1]  # same millisecond: the ban (reference data) first


def test_a_record_in_the_wrong_partition_must_have_been_rejected_and_its_order_blocked() -> None:
    raw = orjson.dumps(order("O9", "A1"))
    # murmur2(b"A1") mod 2 is 1: in partition 0 the record cannot see its account's state.
    inputs = [Record("orders", 0, 0, "A1", raw, timestamp_ms=1, key_bytes=b"A1")]
    engine = Engine(CAL)
    expected = engine.fail_closed(
        "orders", "A1", raw, Source(f"{PREFIX}orders", 0, 0), "placeholder"
    )
    assert [t for t, _, _ in expected] == ["rejected", "decisions"]
    report = audit(lambda: Engine(CAL), PREFIX, 2, inputs, []).as_dict()
    assert report["problems"]["orders_without_decision"] == 1
    assert report["problems"]["inputs_unaccounted"] == 1
