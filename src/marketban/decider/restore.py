"""Brings a task's store up to its committed changelog: only what the store has not applied yet.

The store records the next changelog offset it has not applied. A store ahead of the changelog
(the topic was recreated, the store belongs to another deployment, or a transaction it saw commit
hangs undecided in the changelog) or one that is gone is rebuilt from the start of the changelog.
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from marketban.decider.store import TaskStore
from marketban.settings import KafkaOptions

log = logging.getLogger(__name__)


async def restore(kafka: KafkaOptions, store: TaskStore, topic: str, partition: int) -> int:
    """Apply the committed changelog records after the store's offset; how many were applied."""
    started = time.monotonic()
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **kafka,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        # Six tasks may restore at once: small fetches keep a worker's peak memory down.
        max_partition_fetch_bytes=1024 * 1024,
    )
    await consumer.start()
    applied = 0
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        first = (await consumer.beginning_offsets([tp]))[tp]
        start = store.changelog_offset
        # Only this task's producers write its changelog partition, and they have just been
        # started (which ends their open transactions): records past the last stable offset are
        # a transaction Kafka completed without writing its markers (docs/architecture.md).
        high = await high_watermark(kafka, tp)
        if start > end:
            if high >= start:
                # The records are there, undecided: a transaction this store saw commit whose
                # markers the cluster did not write (docs/operations.md, "hanging transaction").
                log.error(
                    "task %d: changelog records %d-%d of a committed transaction are not "
                    "committed in %s: a hanging transaction; rebuilding the store from what is "
                    "committed (find it with kafka-transactions.sh find-hanging)",
                    partition, end, start - 1, tp,
                )  # fmt: skip
            else:
                log.warning(
                    "store of task %d is ahead of its changelog (%d > %d): rebuilding it",
                    partition, start, end,
                )  # fmt: skip
            store.wipe()
            start = 0
        elif high > end:
            log.error(
                "task %d: a transaction this worker did not see end hangs undecided in %s from "
                "offset %d; if Kafka settles it as committed later, the orders of its batch are "
                "decided twice: run marketban audit (docs/operations.md, a hanging transaction)",
                partition, tp, end,
            )  # fmt: skip
        start = max(start, first)
        if start >= end:
            return 0
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=5_000)
            records = batch.get(tp, [])
            if records:
                changes = [(r.key, r.value) for r in records if r.key is not None]
                store.apply(changes, records[-1].offset + 1)
                applied += len(records)
        store.apply([], end)
    finally:
        await consumer.stop()
    log.info(
        "task %d: restored %d changelog records in %.1fs",
        partition, applied, time.monotonic() - started,
    )  # fmt: skip
    return applied


async def high_watermark(kafka: KafkaOptions, tp: TopicPartition) -> int:
    """The end of ``tp`` counting records of transactions not decided yet (read_uncommitted)."""
    consumer = AIOKafkaConsumer(**kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()
