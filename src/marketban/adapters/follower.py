"""Follows topics from the beginning, every partition, in every worker: the worker's broadcasts.

The ban view (``ban-windows``) and the dashboard's violations and counts are read this way, by
hand instead of with Faust's GlobalTable: read_committed from the beginning, ``ready`` once the
end offsets seen at start are reached, then following. Orders wait for the ban view's ``ready``
(no decision from missing state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from marketban.settings import KafkaOptions

log = logging.getLogger(__name__)

PROBE_S = 1.0


#: Called with each record (an aiokafka ConsumerRecord) whose value is not None.
Apply = Callable[[Any], None]


class TopicFollower:
    """Feeds every record of some topics to ``apply``; explicit start/stop lifecycle.

    With ``probe``, it also asks the cluster for an end offset every PROBE_S and keeps
    ``broker_reachable`` (the worker's readiness needs it).
    """

    def __init__(
        self,
        kafka: KafkaOptions,
        topics: list[str],
        partitions: int,
        apply: Apply,
        *,
        probe: bool = False,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._partitions = partitions
        self._apply = apply
        self._probing = probe
        self.ready = asyncio.Event()
        #: Whether the last metadata request (every PROBE_S) was answered; readiness needs it.
        self.broker_reachable = True
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Assign every partition from the beginning and start following."""
        consumer = AIOKafkaConsumer(
            **self._kafka,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        # The worker created (or checked) these topics with this count before it started.
        tps = [TopicPartition(t, p) for t in self._topics for p in range(self._partitions)]
        # Asked before the partitions are assigned: from then on a fetch is waiting on the
        # broker, which answers a connection's requests in order, so this would wait out its
        # fetch_max_wait (measured: 0.5 s a follower, on every worker start).
        targets = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        self._tasks = [asyncio.create_task(self._follow(targets))]
        if self._probing:
            self._tasks.append(asyncio.create_task(self._probe()))

    async def _probe(self) -> None:
        # The clients keep retrying while the cluster is away and say nothing a probe could
        # read; a small request of our own (one partition's end offset) tells /health/ready.
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by start()
        probe = TopicPartition(self._topics[0], 0)
        while True:
            try:
                await asyncio.wait_for(consumer.end_offsets([probe]), PROBE_S)
            except (KafkaError, OSError, TimeoutError):
                if self.broker_reachable:
                    log.warning("the Kafka cluster does not answer; not ready until it does")
                self.broker_reachable = False
            else:
                if not self.broker_reachable:
                    log.info("the Kafka cluster answers again")
                self.broker_reachable = True
            await asyncio.sleep(PROBE_S)

    async def _follow(self, targets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None  # noqa: S101 - set by start()
        pending = {tp: off for tp, off in targets.items() if off > 0}
        if not pending:
            self.ready.set()
        applied = 0
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for rec in records:
                    if rec.value is None:
                        continue
                    try:
                        self._apply(rec)
                    except ValueError as exc:  # pydantic's and msgspec's errors are ValueErrors
                        # Only the error's type: its text may quote the record (names, ids).
                        log.warning(
                            "%s[%d]@%d unreadable, skipped (%s)",
                            rec.topic,
                            rec.partition,
                            rec.offset,
                            type(exc).__name__,
                        )
                    applied += 1
            if not self.ready.is_set():
                for tp in list(pending):
                    if await self._consumer.position(tp) >= pending[tp]:
                        del pending[tp]
                if not pending:
                    log.info("%s: read to the end (%d records)", ", ".join(self._topics), applied)
                    self.ready.set()

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.stop()
