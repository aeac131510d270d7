"""Dashboard views (violations, dispositions, counts per minute); OpenAPI, metrics, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, date, datetime

import orjson
from openapi_spec_validator import validate

from marketban.adapters.logs import JsonFormatter
from marketban.adapters.metrics import LoopLagProbe, Metrics
from marketban.domain.engine import Source
from marketban.service.monitor import Disposition, Tally, ViolationLog
from marketban.service.openapi import openapi
from tests.unit.helpers import DeciderHealthStub, ban, feed, link, new_engine, order

MINUTE = 60_000


def violation(n: int, kind: str = "blocked_attempt", broker: str = "B001") -> bytes:
    return orjson.dumps(
        {
            "violation_id": f"{kind}:O{n}", "kind": kind,
            "severity": "medium" if kind == "blocked_attempt" else "high",
            "account_id": f"A{n % 3}", "person_id": "P1", "order_id": f"O{n}",
            "decision_ids": ["D1"], "broker": broker, "session": "2024-05-13",
            "detected_at": "2024-05-13T10:00:00+08:00", "detail": "blocked",
        }
    )  # fmt: skip


def disposition(violation_id: str, note: str = "seen") -> bytes:
    at = datetime(2024, 5, 13, 3, tzinfo=UTC)
    return (
        Disposition(violation_id=violation_id, note=note, by="a7", at=at).model_dump_json().encode()
    )


def test_violations_are_listed_newest_first_once_each_and_filtered() -> None:
    log = ViolationLog(capacity=100)
    for n in range(5):
        log.on_violation(violation(n, broker="B001" if n % 2 else "B002"), n * MINUTE)
    log.on_violation(violation(4), 5 * MINUTE)  # read again after a restart: not a new one
    page = log.page(0, 3)
    assert [e.violation.order_id for e in page.items] == ["O4", "O3", "O2"]
    assert page.total == 5
    assert log.page(0, 10, broker="B001").total == 2
    assert log.page(0, 10, kind="executed_breach").total == 0
    assert log.page(0, 10, session=date(2024, 5, 13)).total == 5
    assert log.page(0, 10, account_id="A1").total == 2
    assert log.tally.totals["kind:blocked_attempt"] == 5


def test_the_log_keeps_only_the_newest_violations_up_to_its_capacity() -> None:
    log = ViolationLog(capacity=3)
    for n in range(5):
        log.on_violation(violation(n), 0)
    assert len(log) == 3
    assert log.get("blocked_attempt:O0") is None
    assert log.get("blocked_attempt:O4") is not None


def test_a_disposition_applies_whether_it_is_read_before_or_after_its_violation() -> None:
    log = ViolationLog(capacity=10)
    heard = []
    log.listeners.append(heard.append)
    log.on_disposition(disposition("blocked_attempt:O1", "early"))  # a restart reads topics apart
    log.on_violation(violation(1), 0)
    log.on_violation(violation(2), 0)
    log.on_disposition(disposition("blocked_attempt:O2", "late"))
    assert log.get("blocked_attempt:O1").disposition.note == "early"
    assert log.get("blocked_attempt:O2").disposition.note == "late"
    assert [e.violation.order_id for e in heard] == ["O1", "O2", "O2"]  # new, new, acknowledged


def test_tally_counts_per_minute_and_keeps_a_bounded_window() -> None:
    tally = Tally(minutes=2)
    tally.add("verdict:allow", 0)
    tally.add("verdict:allow", 30_000)
    tally.add("verdict:block", 2 * MINUTE)
    tally.add("verdict:allow", 1 * MINUTE)  # late, lands in its own minute
    series = tally.series(10)
    assert [s["minute"] for s in series] == [
        "1970-01-01T00:01:00+00:00",
        "1970-01-01T00:02:00+00:00",
    ]  # minute 0 dropped: two minutes kept
    assert series[1]["verdict:block"] == 1
    assert tally.totals == {"verdict:allow": 3, "verdict:block": 1}


def test_decision_counts_add_up_by_verdict_and_foreign_records_are_ignored() -> None:
    log = ViolationLog(capacity=10)
    log.on_counts(b'{"verdict:block":2,"verdict:allow":5}', 0)
    log.on_counts(b'{"verdict:block":1}', 61_000)
    log.on_counts(b"not json", 0)
    log.on_counts(b'{"order_id":"O1","verdict":"block"}', 0)  # a decision is not a count
    log.on_counts(b'{"kind:blocked_attempt":3}', 0)  # violations are counted from violations
    assert log.tally.totals == {"verdict:block": 3, "verdict:allow": 5}
    assert [m["verdict:block"] for m in log.tally.series(5)] == [2, 1]


def test_openapi_document_is_valid_and_names_every_endpoint() -> None:
    document = openapi()
    validate(document)
    assert set(document["paths"]) == {
        "/api/accounts/{account_id}", "/api/check", "/api/bans", "/api/bans/{decision_id}",
        "/api/violations", "/api/violations/stream", "/api/violations/{violation_id}",
        "/api/violations/{violation_id}/acknowledge", "/api/stats",
        "/api/violations/{violation_id}/confirm", "/api/violations/{violation_id}/dismiss",
        "/api/accounts/{account_id}/controllers/{person_id}/revoke",
    }  # fmt: skip
    for action in ("acknowledge", "confirm", "dismiss"):
        write = document["paths"][f"/api/violations/{{violation_id}}/{action}"]["post"]
        assert write["security"] == [{"bearer": []}]


async def test_the_loop_lag_probe_shows_a_loop_that_was_blocked_running_its_timer_late() -> None:
    metrics = Metrics(dict, dict)
    probe = LoopLagProbe(metrics.observe_loop_lag, every_s=0.01)
    await probe.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.08)  # noqa: ASYNC251 - blocking the loop is what is measured
        await asyncio.sleep(0.03)
    finally:
        await probe.stop()
    found = {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1)
            for line in metrics.exposition().decode().splitlines()
            if line.startswith("marketban_event_loop_lag_seconds")
        )
    }
    samples = found["marketban_event_loop_lag_seconds_count"]
    assert samples >= 3
    # The timer due during the block fired at least 60 ms late.
    assert found['marketban_event_loop_lag_seconds_bucket{le="0.05"}'] < samples
    assert found["marketban_event_loop_lag_seconds_sum"] >= 0.06


def test_metrics_count_by_closed_labels_and_never_carry_persons_or_accounts() -> None:
    engine = new_engine()
    out = feed(
        engine,
        ("bans", ban()),
        ("accounts", link()),
        ("orders", order("O1")),
        ("orders", order("O2", account="A2")),
    )
    out += engine.handle("orders", "A1", b"{broken", Source("marketban.orders"))
    metrics = Metrics(lambda: {"accounts": 2}, lambda: {("marketban.orders", 0): 7})
    metrics.watch(
        DeciderHealthStub(hanging={2: 406}, failing=12.5, layout_errors={"marketban.orders": 8})
    )
    metrics.count(out, "orders")
    for seconds in (0.003, 0.5, 0.005):  # 0.005 is on a bound: counted as <= it
        metrics.observe_latency(seconds)
    text = metrics.exposition().decode()
    assert 'marketban_decision_latency_seconds_bucket{le="0.002"} 0.0' in text
    assert 'marketban_decision_latency_seconds_bucket{le="0.005"} 2.0' in text
    assert 'marketban_decision_latency_seconds_bucket{le="0.5"} 3.0' in text
    assert 'marketban_decision_latency_seconds_bucket{le="+Inf"} 3.0' in text
    assert "marketban_decision_latency_seconds_count 3.0" in text
    assert "marketban_decision_latency_seconds_sum 0.508" in text
    assert 'marketban_decisions_total{clause="",verdict="block"} 1.0' in text
    assert 'marketban_decisions_total{clause="",verdict="allow"} 1.0' in text
    assert 'marketban_violations_total{kind="blocked_attempt"} 1.0' in text
    assert 'marketban_rejected_total{topic="orders"} 1.0' in text
    assert 'marketban_consumer_lag{partition="0",topic="marketban.orders"} 7.0' in text
    assert 'marketban_table_entries{table="accounts"} 2.0' in text
    assert 'marketban_hanging_transaction_offset{task="2"} 406.0' in text
    assert "marketban_fetch_failing_seconds 12.5" in text
    assert 'marketban_topic_partitions_unexpected{topic="marketban.orders"} 8.0' in text
    for private in ("A1", "A2", "P1", "O1", "张三", "D1"):
        assert f'"{private}"' not in text


def test_log_records_are_json_lines_with_the_traceback_kept() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")  # noqa: TRY301
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed on %s[%d]", ("orders", 3), exc_info=True
        )
        import sys  # noqa: PLC0415

        record.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(record))
    assert entry["level"] == "ERROR"
    assert entry["msg"] == "failed on orders[3]"
    assert "ValueError: boom" in entry["exc"]
    assert entry["ts"].endswith("+00:00")
