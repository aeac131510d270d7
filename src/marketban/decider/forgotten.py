"""A transaction the cluster forgot: its records sit in a task's partitions, no marker ends it.

Kafka's transaction coordinator can record a transaction as complete while the markers that end
it were never written. Seen here with the single broker stopped (SIGTERM) just after a commit:
the coordinator's log held CompleteCommit, the partitions the transaction wrote held its records
and no marker (``make chaos``, broker restart, 2 runs in 10). Initialising the producer again
does not end it, since for the coordinator nothing is open. Each partition keeps it open until
that producer id writes a marker there again, and the next transaction the producer commits
then commits those records as well: the batch was decided before the restart, decided again by
the reopened task (its offsets were never committed), and both decisions became visible.

A task opening looks for one after its producers are initialised (which ends every transaction
the coordinator knows of). Its changelog partition is written by its own producers alone, and
by every one of its transactions (``store.BATCH_MARK_KEY``), so a last stable offset short of
the end there is such a transaction. Each producer then runs one transaction over every
partition the task may have written (each output topic's partitions, the changelog's, the
group's offsets) and aborts it: the abort marker ends the forgotten transaction on every
partition, as aborted, and the batch is decided again from the committed offsets. The store,
which took that batch when its commit returned, is rebuilt from the committed changelog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from marketban.decider.restore import high_watermark
from marketban.decider.store import BATCH_MARK_KEY
from marketban.settings import KafkaOptions

log = logging.getLogger(__name__)


class ForgottenTransactionError(RuntimeError):
    """The aborts did not end a transaction left open in the task's changelog partition."""


async def open_range(kafka: KafkaOptions, tp: TopicPartition) -> tuple[int, int]:
    """``tp``'s last stable offset and its end (equal when no transaction is open there)."""
    consumer = AIOKafkaConsumer(
        **kafka, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        stable = int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()
    return stable, await high_watermark(kafka, tp)


async def end_forgotten(
    kafka: KafkaOptions,
    producers: Iterable[AIOKafkaProducer],
    changelog: TopicPartition,
    *,
    outputs: Iterable[str],
    group: str,
    anchor: TopicPartition,
) -> bool:
    """End, as aborted, a transaction left open in the task's partitions; whether there was one.

    Call with the task's producers initialised. ``outputs``: every output topic the task writes;
    ``anchor``: one of its input partitions, whose offset commit brings the group's offsets into
    each abort (it ends pending offsets the forgotten transaction left at the coordinator).
    """
    stable, end = await open_range(kafka, changelog)
    if stable >= end:
        return False
    log.error(
        "task %d: a transaction no coordinator knows is open in %s from offset %d (end %d): "
        "ending it as aborted, and rebuilding the store (docs/operations.md, a hanging "
        "transaction)",
        changelog.partition, changelog, stable, end,
    )  # fmt: skip
    topics = list(outputs)
    for producer in producers:
        await producer.begin_transaction()
        sent = [await producer.send(changelog.topic, None, BATCH_MARK_KEY, changelog.partition)]
        for topic in topics:
            parts = sorted(await producer.partitions_for(topic))
            sent.extend([await producer.send(topic, None, BATCH_MARK_KEY, p) for p in parts])
        await asyncio.gather(*sent)
        await producer.send_offsets_to_transaction({anchor: 0}, group)
        await producer.abort_transaction()
    stable, end = await open_range(kafka, changelog)
    if stable < end:
        raise ForgottenTransactionError(
            f"task {changelog.partition}: {changelog} still has a transaction open from offset "
            f"{stable} (end {end}) after every producer of the task aborted one; another "
            "producer writes this partition? (kafka-transactions.sh find-hanging)"
        )
    return True
