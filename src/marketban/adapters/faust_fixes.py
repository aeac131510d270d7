"""Two corrections to faust-streaming 0.15.3, applied by the worker before its app starts.

1. Highwaters under exactly-once. Faust's table recovery asks the consumer for each changelog
   partition's last stable offset (``AIOKafkaConsumer.last_stable_offset``). aiokafka knows that
   only after a fetch response for the partition; before, it is ``None``, which Faust turns into a
   highwater of -1. A worker that holds RocksDB state for a partition it is newly given then stops
   with ``ConsistencyError: The persisted offset ... is higher than the last offset in that topic
   (highwater) (26 > -1)`` (faust-streaming issues #158 and #597 describe the same error). The
   correction asks the broker when the consumer does not know: ``end_offsets`` of a read_committed
   consumer is a ListOffsets request at that isolation level, whose answer is the last stable
   offset itself.

2. Seek before resume at the end of recovery. When table recovery ends, Faust resumes the stream
   partitions and *then* seeks them to their committed offsets. Its fetcher is already running,
   so in between it hands the agents records from wherever the partitions stood; the seek then
   rewinds them. The agent sees some records twice and, worse, Faust's bookkeeping of acknowledged
   offsets gets a hole below the committed offset (its ``_new_offset`` then returns None for good:
   "gap in the head of the acked queue"). That partition's offset never commits again, so its
   transaction — holding every decision made since — never commits: decisions stop becoming
   visible while the worker keeps reading. This was the fault suite's "stall after a rebalance
   under load" (docs/operations.md); the worker's log showed batches of records delivered between
   "Seek stream partitions to committed offsets" and "Worker ready", then the same offsets again.
   The correction seeks while the partitions are still paused, then resumes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.tables import recovery as faust_recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

FIXED_VERSION = "0.15.3"


async def _highwaters(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:  # noqa: ANN401
    consumer = self._ensure_consumer()
    tps = list(partitions)
    if not self.consumer.in_transaction:
        return dict(await consumer.end_offsets(tps))
    known = {tp: consumer.last_stable_offset(tp) for tp in tps}
    unknown = [tp for tp, offset in known.items() if offset is None]
    if unknown:
        known.update(await consumer.end_offsets(unknown))
    return known


async def _seek_then_resume(recovery: Any) -> None:  # noqa: ANN401 - faust is untyped
    """Seek the stream partitions to their committed offsets while paused, then resume them."""
    consumer = recovery.app.consumer
    streams = {tp for tp in consumer.assignment() if not recovery._is_changelog_tp(tp)}  # noqa: SLF001
    if streams:
        recovery.log.info("Seek stream partitions to committed offsets (before resuming them).")
        await recovery._wait(  # noqa: SLF001
            consumer.perform_seek(), timeout=recovery.app.conf.broker_request_timeout
        )
    consumer.resume_partitions(streams)


async def _resume_streams(self: Any, generation_id: int = 0) -> None:  # noqa: ANN401
    # Faust's Recovery._resume_streams (0.15.3) with the seek moved before the resume.
    app = self.app
    await app.on_rebalance_complete.send()
    if app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    await _seek_then_resume(self)
    self.completed.set()
    await _start_flow(self)


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:  # noqa: ANN401
    # Faust's Recovery.on_recovery_completed (0.15.3) with the seek moved before the resume.
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]
            )
        )
        for table in self.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            "Recovery rebalancing again app id %s param %s",
            self.app.consumer_generation_id,
            generation_id,
        )
        return
    await _seek_then_resume(self)
    self.completed.set()
    await _start_flow(self, standbys_ready=not self.app.assignor.assigned_standbys())


async def _start_flow(recovery: Any, *, standbys_ready: bool = True) -> None:  # noqa: ANN401
    app = recovery.app
    app.flow_control.resume()
    app.consumer.resume_flow()
    await app._fetcher.maybe_start()  # noqa: SLF001 - make sure the fetcher runs, as Faust does
    recovery.tables.on_actives_ready()
    if standbys_ready:
        recovery.tables.on_standbys_ready()
    app.on_rebalance_end()
    recovery.log.info("Worker ready")


def apply() -> None:
    """Install the corrections (idempotent); warn when Faust is not the version they are for."""
    if faust.__version__ != FIXED_VERSION:
        log.warning(
            "faust-streaming %s: marketban's corrections were written for %s; check whether "
            "they are still needed (marketban.adapters.faust_fixes)",
            faust.__version__,
            FIXED_VERSION,
        )
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]  # noqa: SLF001
    faust_recovery.Recovery._resume_streams = _resume_streams  # type: ignore[method-assign]  # noqa: SLF001
    faust_recovery.Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
