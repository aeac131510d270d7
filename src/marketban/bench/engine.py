"""``marketban bench engine``: the engine in-process, JSON bytes in to JSON bytes out, one core."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

from marketban.domain.calendars import MarketCalendar
from marketban.domain.engine import Engine, Source
from marketban.domain.fastpath import json_bytes
from marketban.service.heap import tune_collector
from marketban.service.synthetic import FLOW_TOPICS, generate, messages


def _inputs(orders: int, banned_persons: int) -> tuple[list[Any], list[Any]]:
    """Reference data and order flow as (topic, key, payload bytes), prepared before timing."""
    reference: list[tuple[str, str, bytes]] = []
    flow: list[tuple[str, str, bytes]] = []
    lines = generate(
        orders, banned_persons=banned_persons, accounts_per_person=3, other_accounts=1_000_000
    )
    for item in messages(lines):
        (flow if item[0] in FLOW_TOPICS else reference).append(item)
    return reference, flow


def _one_run(calendar: MarketCalendar, reference: list[Any], flow: list[Any]) -> dict[str, Any]:
    engine = Engine(calendar)
    for topic, key, payload in reference:
        engine.handle(topic, key, payload, Source(topic))
    # As the worker runs: there the state is in RocksDB, not objects a full collection walks.
    tune_collector()
    decisions = produced = 0
    start = time.perf_counter()
    for offset, (topic, key, payload) in enumerate(flow):
        for out_topic, _key, value in engine.handle(topic, key, payload, Source(topic, 0, offset)):
            produced += len(json_bytes(value))
            decisions += out_topic == "decisions"
    elapsed = time.perf_counter() - start
    gc.unfreeze()  # this run's engine goes; the next run freezes its own reference state
    return {
        "decisions": decisions,
        "elapsed_s": round(elapsed, 3),
        "decisions_per_s": round(decisions / elapsed),
        "output_bytes": produced,
    }


def bench_engine(
    calendar: MarketCalendar, orders: int, banned_persons: int, runs: int = 3
) -> dict[str, Any]:
    """Decide ``orders`` synthetic orders ``runs`` times, each on a fresh engine; median figures."""
    reference, flow = _inputs(orders, banned_persons)
    results = [_one_run(calendar, reference, flow) for _ in range(runs)]
    return {
        "bench": "engine",
        "orders": orders,
        "banned_persons": banned_persons,
        "flow_messages": len(flow),
        "runs_count": runs,
        "decisions_per_s": statistics.median(r["decisions_per_s"] for r in results),
        "runs": results,
    }
