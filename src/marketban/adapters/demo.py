"""``marketban demo``: drive a running worker with a synthetic market and show a live summary."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections import Counter, deque
from typing import IO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from marketban.adapters import eventloop
from marketban.adapters.kafka_admin import prepare_topics, topic_plan
from marketban.domain.models import OUTPUT_TOPICS
from marketban.service.synthetic import FLOW_TOPICS, generate, messages
from marketban.settings import Settings


class _Executions:
    """Executions waiting for their order's decision: the market acts only after the gateway."""

    def __init__(self) -> None:
        self.waiting: dict[str, tuple[float, str, bytes, bytes]] = {}
        self.released: deque[tuple[str, bytes, bytes]] = deque()

    def hold(self, order_id: str, topic: str, key: bytes, value: bytes) -> None:
        self.waiting[order_id] = (time.monotonic() + 10.0, topic, key, value)

    def decided(self, order_id: str) -> None:
        held = self.waiting.pop(order_id, None)
        if held is not None:
            self.released.append(held[1:])

    def due(self) -> list[tuple[str, bytes, bytes]]:
        now = time.monotonic()
        late = [oid for oid, h in self.waiting.items() if h[0] <= now]
        for oid in late:  # no decision seen in time: report the fill anyway (a real breach)
            self.released.append(self.waiting.pop(oid)[1:])
        out = list(self.released)
        self.released.clear()
        return out


async def _produce(
    settings: Settings, rate: float, orders: int, stats: Counter[str], execs: _Executions
) -> None:
    producer = AIOKafkaProducer(**settings.kafka(), linger_ms=5, enable_idempotence=True)
    await producer.start()
    run = secrets.token_hex(3)  # order ids unique per run, so reruns on the same topics work
    try:
        start = time.monotonic()
        sent_flow = 0
        lines = generate(orders, banned_persons=40, order_prefix=f"D{run}-", broken_every=500)
        for name, spec_key, value in messages(lines):
            topic, key = settings.topic(name), spec_key.encode()
            if name == "executions":
                execs.hold(orjson.loads(value)["order_id"], topic, key, value)
            else:
                await producer.send(topic, value, key=key)
            for h_topic, h_key, h_value in execs.due():
                await producer.send(h_topic, h_value, key=h_key)
            stats[f"sent {name}"] += 1
            if name in FLOW_TOPICS:
                sent_flow += 1
                ahead = sent_flow / rate - (time.monotonic() - start)
                if ahead > 0:
                    await producer.flush()
                    await asyncio.sleep(ahead)
        while execs.waiting:
            for h_topic, h_key, h_value in execs.due():
                await producer.send(h_topic, h_value, key=h_key)
            await asyncio.sleep(0.1)
        await producer.flush()
    finally:
        await producer.stop()


async def _watch(
    settings: Settings, stats: Counter[str], latest: deque[str], execs: _Executions
) -> None:
    names = {settings.topic(n): n for n in OUTPUT_TOPICS}
    consumer = AIOKafkaConsumer(
        *names,
        **settings.kafka(),
        isolation_level="read_committed",
        auto_offset_reset="latest",
        group_id=None,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=250)
            for tp, records in batches.items():
                topic = names[tp.topic]
                for r in records:
                    value = orjson.loads(r.value or b"{}")
                    if topic == "decisions":
                        stats[f"verdict {value['verdict']}"] += 1
                        stats["decided"] += 1
                        execs.decided(value["order_id"])
                    elif topic == "violations":
                        stats[f"violation {value['kind']}"] += 1
                        latest.append(
                            f"{value['kind']:16} {value['account_id']:10} {value['order_id']}: "
                            f"{value['detail'][:90]}"
                        )
                    else:
                        stats["rejected"] += 1
    finally:
        await consumer.stop()


async def _show(stats: Counter[str], latest: deque[str], out: IO[str]) -> None:
    last, last_t = 0, time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        rate = (stats["decided"] - last) / (now - last_t)
        last, last_t = stats["decided"], now
        verdicts = ", ".join(
            f"{k.split()[1]} {v}" for k, v in sorted(stats.items()) if k.startswith("verdict")
        )
        kinds = ", ".join(
            f"{k.split()[1]} {v}" for k, v in sorted(stats.items()) if k.startswith("violation")
        )
        out.write(
            f"\n[{time.strftime('%H:%M:%S')}] decisions/s {rate:8.0f} | decided {stats['decided']}"
            f" ({verdicts}) | violations: {kinds or 'none yet'} | rejected {stats['rejected']}\n"
        )
        for line in list(latest)[-3:]:
            out.write(f"    latest: {line}\n")
        out.flush()


async def demo(settings: Settings, rate: float, orders: int, out: IO[str]) -> None:
    """Produce the market at ``rate`` orders/s and print a summary every second."""
    plan = topic_plan(settings)
    await prepare_topics(
        settings.kafka(), plan, settings.topic_partitions, settings.topic_replication
    )
    stats: Counter[str] = Counter()
    latest: deque[str] = deque(maxlen=20)
    execs = _Executions()
    watcher = asyncio.create_task(_watch(settings, stats, latest, execs))
    shower = asyncio.create_task(_show(stats, latest, out))
    try:
        await asyncio.sleep(1.0)  # the watcher is positioned at the end before we produce
        await _produce(settings, rate, orders, stats, execs)
        out.write("\nall demo orders produced; watching (Ctrl-C to stop)\n")
        await asyncio.Event().wait()
    finally:
        for task in (watcher, shower):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def demo_command(settings: Settings, rate: float, orders: int) -> int:
    """CLI entry of ``marketban demo``."""
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(demo(settings, rate, orders, sys.stdout))
    return 0
