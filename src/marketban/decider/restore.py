"""Brings a task's store up to its committed changelog: only what the store has not applied yet.

The store records the next changelog offset it has not applied. A store ahead of the changelog
(the topic was recreated, the store belongs to another deployment, or a transaction it saw commit
hangs undecided in the changelog) or one that is gone is rebuilt from the start of the changelog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from marketban.decider.store import TaskStore
from marketban.settings import KafkaOptions

log = logging.getLogger(__name__)

_POLL_MS = 20


class Ends:
    """Partitions' last stable offsets and ends, from two consumers kept open (no group).

    A task opening asks for its changelog partition's (``settle_forgotten``, ``restore``) and
    the watch for hanging transactions asks every few seconds; a consumer started for each
    question took about 100 ms here, paid by every task at every rebalance. Started on first
    use, again after a start that failed (the cluster away); safe to share between tasks.
    """

    def __init__(self, kafka: KafkaOptions) -> None:
        self._kafka = kafka
        self._consumers: tuple[AIOKafkaConsumer, AIOKafkaConsumer] | None = None
        self._started = 0
        self._lock = asyncio.Lock()

    async def _open(self) -> tuple[AIOKafkaConsumer, AIOKafkaConsumer]:
        async with self._lock:
            if self._consumers is None:
                options = {**self._kafka, "group_id": None, "enable_auto_commit": False}
                self._consumers = (
                    AIOKafkaConsumer(**options, isolation_level="read_committed"),
                    AIOKafkaConsumer(**options),
                )
            for consumer in self._consumers[self._started :]:
                await consumer.start()
                self._started += 1
            return self._consumers

    async def stable(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's last stable offset: where a read_committed reader stops."""
        stable, _ = await self._open()
        return {tp: int(o) for tp, o in (await stable.end_offsets(tps)).items()}

    async def end(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end, records of transactions not decided yet included."""
        _, whole = await self._open()
        return {tp: int(o) for tp, o in (await whole.end_offsets(tps)).items()}

    async def stable_and_end(self, tp: TopicPartition) -> tuple[int, int]:
        """``tp``'s last stable offset and its end (equal when no transaction is open there)."""
        stable = (await self.stable([tp]))[tp]
        return stable, (await self.end([tp]))[tp]

    async def once_settled(self, tp: TopicPartition, within_s: float) -> tuple[int, int]:
        """``stable_and_end`` once nothing is open in ``tp``, or as it is after ``within_s``.

        A commit returns once the coordinator has decided it, before its markers are written:
        right after one, the last stable offset can still be short of the end for a moment.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            stable, end = await self.stable_and_end(tp)
            if stable >= end or loop.time() >= deadline:
                return stable, end
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Close both consumers."""
        for consumer in self._consumers or ():
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._consumers, self._started = None, 0


async def restore(
    kafka: KafkaOptions, ends: Ends, store: TaskStore, topic: str, partition: int
) -> int:
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
        # A fetch at the end waits this long for records that never come (the range left is
        # often only the last commit's marker: the store's offset is past its batch's records).
        fetch_max_wait_ms=_POLL_MS,
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
        high = (await ends.end([tp]))[tp]
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
            batch = await consumer.getmany(tp, timeout_ms=_POLL_MS, max_records=5_000)
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
