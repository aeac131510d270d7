"""Keeps a worker's BanView in step with the ``ban-windows`` topic (every partition, every worker).

This is the worker's broadcast of ban state, written by hand instead of with Faust's GlobalTable:
it reads read_committed from the beginning, reports ready once it reached the end offsets it saw
at start, and then follows the topic. Orders wait for ``ready`` (no decision from missing state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from marketban.domain.bans import BanView, BanWindows
from marketban.settings import KafkaOptions

log = logging.getLogger(__name__)

PROBE_S = 1.0


class BanViewConsumer:
    """Follows the ban-windows topic into a BanView; explicit start/stop lifecycle."""

    def __init__(self, kafka: KafkaOptions, topic: str, view: BanView) -> None:
        self._kafka = kafka
        self._topic = topic
        self.view = view
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
        partitions = consumer.partitions_for_topic(self._topic)
        while not partitions:
            await asyncio.sleep(0.1)  # topic metadata not yet known to this client
            await consumer._client.force_metadata_update()  # noqa: SLF001 - no public way
            partitions = consumer.partitions_for_topic(self._topic)
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        targets = await consumer.end_offsets(tps)
        self._consumer = consumer
        self._tasks = [
            asyncio.create_task(self._follow(targets)),
            asyncio.create_task(self._probe()),
        ]

    async def _probe(self) -> None:
        # Faust keeps retrying while the cluster is away and says nothing a probe could read;
        # a metadata request of our own tells /health/ready when the broker stops answering.
        assert self._consumer is not None  # noqa: S101 - set by start()
        client = self._consumer._client  # noqa: SLF001 - aiokafka has no public metadata call
        while True:
            try:
                await asyncio.wait_for(client.fetch_all_metadata(), PROBE_S)
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
                    if rec.value is not None:
                        self.view.apply(BanWindows.model_validate_json(rec.value))
                        applied += 1
            if not self.ready.is_set():
                for tp in list(pending):
                    if await self._consumer.position(tp) >= pending[tp]:
                        del pending[tp]
                if not pending:
                    log.info("ban view ready: %d records, %d persons", applied, len(self.view))
                    self.ready.set()

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.stop()
