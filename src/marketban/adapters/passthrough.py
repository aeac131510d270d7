"""The transport's own limit: a raw aiokafka exactly-once passthrough, no Faust, no engine.

It consumes input topics read_committed in a consumer group and produces every record's bytes
unchanged to an output topic, same partition, committing the input offsets in the same
transaction as the outputs: the guarantees of the worker with none of its work.
``marketban bench e2e`` runs it as a separate process and divides the worker's throughput by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def passthrough(bootstrap: str, group: str, inputs: list[str], output: str) -> None:
    """Copy ``inputs`` to ``output`` exactly once until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        *inputs,
        bootstrap_servers=bootstrap,
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"{group}-0", linger_ms=1
    )
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
                        await producer.send(output, rec.value, key=rec.key, partition=tp.partition)
                    offsets[tp] = records[-1].offset + 1
                await producer.send_offsets_to_transaction(offsets, group)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        await producer.stop()


def passthrough_command(bootstrap: str, group: str, inputs: list[str], output: str) -> int:
    """``marketban bench passthrough``: run the passthrough until stopped."""
    asyncio.run(passthrough(bootstrap, group, inputs, output))
    return 0
