"""The transport's own limit: a raw aiokafka exactly-once passthrough, no Faust, no engine.

Also what a Faust-free design would give: the same loop with the engine in it
(``engine_loop``, state in memory only: a measurement, not a product).

It consumes input topics read_committed in a consumer group and produces every record's bytes
unchanged to an output topic, same partition, committing the input offsets in the same
transaction as the outputs: the guarantees of the worker with none of its work.
``marketban bench e2e`` runs it as a separate process and divides the worker's throughput by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from marketban.domain.calendars import MarketCalendar
from marketban.domain.engine import Engine, Source
from marketban.domain.fastpath import json_bytes
from marketban.domain.models import INPUT_TOPICS
from marketban.settings import KafkaOptions

Sends = list[tuple[str, bytes | None, bytes]]


async def _copy_loop(
    kafka: KafkaOptions,
    group: str,
    inputs: list[str],
    handle: Callable[[ConsumerRecord[bytes, bytes]], Sends],
) -> None:
    """Consume ``inputs``; send what ``handle`` makes of each record exactly once, until stopped."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        *inputs,
        **kafka,
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(**kafka, transactional_id=f"{group}-0", linger_ms=1)
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            if not batch:
                continue
            offsets: dict[TopicPartition, int] = {}
            async with producer.transaction():
                for tp, records in batch.items():
                    for rec in records:
                        for topic, key, value in handle(rec):
                            await producer.send(topic, value, key=key, partition=tp.partition)
                    offsets[tp] = records[-1].offset + 1
                await producer.send_offsets_to_transaction(offsets, group)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        await producer.stop()


async def passthrough(kafka: KafkaOptions, group: str, inputs: list[str], output: str) -> None:
    """Copy ``inputs`` to ``output`` exactly once until SIGTERM/SIGINT."""
    await _copy_loop(kafka, group, inputs, lambda rec: [(output, rec.key, rec.value or b"")])


async def engine_loop(
    kafka: KafkaOptions, group: str, prefix: str, calendar: MarketCalendar
) -> None:
    """The engine on ``<prefix><input topic>``, exactly once: an upper bound, not a product.

    Decisions go to ``<prefix>decisions``, everything else to ``<prefix>other``. State lives in
    this process only (no changelog, no recovery).
    """
    engine = Engine(calendar)
    cut = len(prefix)

    def handle(rec: ConsumerRecord[bytes, bytes]) -> Sends:
        key = rec.key.decode() if rec.key is not None else None
        source = Source(rec.topic, rec.partition, rec.offset)
        outputs = engine.handle(rec.topic[cut:], key, rec.value or b"", source, datetime.now(UTC))
        return [
            (
                f"{prefix}{'decisions' if topic == 'decisions' else 'other'}",
                k.encode() if k is not None else None,
                json_bytes(v),
            )
            for topic, k, v in outputs
        ]

    await _copy_loop(kafka, group, [f"{prefix}{t}" for t in INPUT_TOPICS], handle)


def passthrough_command(kafka: KafkaOptions, group: str, inputs: list[str], output: str) -> int:
    """``marketban bench passthrough``: run the passthrough until stopped."""
    asyncio.run(passthrough(kafka, group, inputs, output))
    return 0
