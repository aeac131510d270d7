"""The transport's own limit: raw aiokafka exactly-once passthroughs, no engine, no state.

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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from marketban.adapters import eventloop
from marketban.decider.transactions import RETRY_BACKOFF_MS, tune_transaction_retries
from marketban.settings import KafkaOptions

Sends = list[tuple[str, bytes | None, bytes]]


async def _copy_loop(
    kafka: KafkaOptions,
    group: str,
    inputs: list[str],
    handle: Callable[[ConsumerRecord[bytes, bytes]], Sends],
) -> None:
    """Consume ``inputs``; send what ``handle`` makes of each record exactly once, until stopped."""
    stop = _stop_on_signals()
    consumer = _group_consumer(kafka, group, inputs, max_partition_fetch_bytes=4 * 1024 * 1024)
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


async def passthrough_per_partition(
    kafka: KafkaOptions, group: str, inputs: list[str], output: str
) -> None:
    """The copy with one transactional producer per input partition, committed concurrently.

    The decider's shape without its work: the latency floor its latency is compared with.
    """
    tune_transaction_retries()  # as the decider does: the same transport
    stop = _stop_on_signals()
    consumer = _group_consumer(kafka, group, inputs, fetch_max_wait_ms=5)
    producers: dict[int, AIOKafkaProducer] = {}
    busy: dict[int, asyncio.Task[None]] = {}
    await consumer.start()

    async def copy(
        partition: int, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        producer = producers.get(partition)
        if producer is None:
            producer = AIOKafkaProducer(
                **kafka,
                transactional_id=f"{group}-{partition}",
                linger_ms=1,
                retry_backoff_ms=RETRY_BACKOFF_MS,
            )
            await producer.start()
            producers[partition] = producer
        async with producer.transaction():
            for records in batch.values():
                for rec in records:
                    await producer.send(output, rec.value or b"", key=rec.key, partition=partition)
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            await producer.send_offsets_to_transaction(offsets, group)

    try:
        pending: dict[int, dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = {}
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=5, max_records=5000)
            for tp, records in batch.items():
                pending.setdefault(tp.partition, {}).setdefault(tp, []).extend(records)
            for partition in list(pending):
                running = busy.get(partition)
                if running is not None and not running.done():
                    continue
                if running is not None:
                    running.result()
                busy[partition] = asyncio.create_task(copy(partition, pending.pop(partition)))
    finally:
        for running in busy.values():
            with contextlib.suppress(Exception):
                await running
        with contextlib.suppress(Exception):
            await consumer.stop()
        for producer in producers.values():
            await producer.stop()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _group_consumer(
    kafka: KafkaOptions, group: str, inputs: list[str], **tuning: int
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *inputs,
        **kafka,
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **tuning,
    )


def passthrough_command(
    kafka: KafkaOptions, group: str, inputs: list[str], output: str, *, per_partition: bool
) -> int:
    """``marketban bench passthrough[-per-partition]``: run the passthrough until stopped."""
    run = passthrough_per_partition if per_partition else passthrough
    eventloop.run(run(kafka, group, inputs, output))
    return 0
