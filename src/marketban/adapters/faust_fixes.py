"""Five corrections to faust-streaming 0.15.3, applied by the worker before its app starts.

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

3. Local table state is dropped at every rebalance, and Faust's recovery bookkeeping with it.
   Faust writes a table change to its local store at once and to the changelog inside the
   transaction; a transaction aborted at a rebalance leaves its writes in the local store, and the
   worker then re-reads the input against state that already holds their effects (the fault suite
   saw 47 orders skipped as "already applied" whose decisions had been aborted). So the local
   stores are emptied whenever partitions are assigned, and recovery reloads every partition from
   its changelog, read_committed. Emptying the stores alone is not enough: Faust's recovery
   remembers, per changelog partition it keeps across the rebalance, the offset it had read to,
   and resumes from there — from an empty store that loses every record before it. (The fault
   suite's join-and-leave case at 4x decided orders of banned persons as "no person is linked"
   right after its third rebalance.) The recovery's offsets, highwaters and unapplied buffers are
   cleared with the stores. The cost is a full table recovery per rebalance and start.

4. A commit barrier. Faust's commit timer runs beside the agent. The worker sends a record's
   outputs at once, while its table writes (the ``progress`` guard, account state) wait in Faust's
   producer buffer until the batch ends; a commit in between puts the outputs in one transaction
   and the table writes in the next. If that next one is aborted (a rebalance), the record is read
   again with no trace of having been handled and decided a second time — the fault suite's
   join-and-leave case saw four orders decided twice. With a barrier installed on the app
   (``COMMIT_BARRIER``), Faust's transactional commit waits for it; the worker holds it while it
   handles a batch, from the first record to the flush of its table writes, so a commit falls
   only between batches: outputs and state of every record in one transaction, and the offsets
   (acknowledged after the batch) in the same one or a later one, where the guard skips them.

5. Open transactions are aborted when partitions are revoked. Faust commits what it can at a
   revocation, but a transaction whose input offsets could not be committed stays open, and for a
   partition the worker keeps across the rebalance Faust simply goes on with it ("Invalid state
   transition IN_TRANSACTION -> IN_TRANSACTION" in the log). The consumer meanwhile rewinds to the
   committed offsets, so those records are handled again and their outputs join the same open
   transaction a second time; when it commits, both copies become visible (the join-and-leave
   case at 4x: six orders decided twice, the second time right after the rebalance). Aborting
   every open transaction once Faust's revocation commit is done discards exactly the outputs
   whose inputs will be read again; the assignment then begins fresh transactions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.tables import recovery as faust_recovery
from faust.transport.consumer import TransactionManager
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


_faust_on_rebalance = faust_recovery.Recovery.on_rebalance


def discard_local_state(recovery: Any) -> None:  # noqa: ANN401 - faust is untyped
    """Empty every table's local store and what recovery knew of it (correction 3)."""
    for table in recovery.tables.values():
        table.reset_state()
        data = getattr(table.data, "data", None)  # the memory store's reset_state keeps it
        if isinstance(data, dict):
            data.clear()
    # Cleared in place: Faust's changelog reader holds references to these very objects.
    for buffer in recovery.buffers.values():
        buffer.clear()
    for known in (
        recovery.active_offsets,
        recovery.standby_offsets,
        recovery.active_highwaters,
        recovery.standby_highwaters,
    ):
        known.clear()


async def _on_rebalance(
    self: Any,  # noqa: ANN401 - faust is untyped
    assigned: Any,  # noqa: ANN401
    revoked: Any,  # noqa: ANN401
    newly_assigned: Any,  # noqa: ANN401
    generation_id: int = 0,
) -> None:
    discard_local_state(self)
    log.info("rebalance: local table state dropped; recovery reloads it from the changelogs")
    await _faust_on_rebalance(self, assigned, revoked, newly_assigned, generation_id)


#: The app attribute holding the worker's commit barrier (an asyncio.Lock), correction 4.
COMMIT_BARRIER = "marketban_commit_barrier"
_faust_commit = TransactionManager.commit


async def _commit(
    self: Any,  # noqa: ANN401 - faust is untyped
    offsets: Any,  # noqa: ANN401
    start_new_transaction: bool = True,
) -> bool:
    barrier = getattr(self.app, COMMIT_BARRIER, None)
    if barrier is None:
        return bool(await _faust_commit(self, offsets, start_new_transaction))
    async with barrier:
        return bool(await _faust_commit(self, offsets, start_new_transaction))


_faust_on_partitions_revoked = TransactionManager.on_partitions_revoked


async def _abort_open_transactions(self: Any, revoked: Any) -> None:  # noqa: ANN401
    await _faust_on_partitions_revoked(self, revoked)  # flushes the producer
    barrier = getattr(self.app, COMMIT_BARRIER, None)
    producer = self.producer
    for tid, transactional in list(getattr(producer, "_transaction_producers", {}).items()):
        manager = getattr(transactional, "_txn_manager", None)
        if manager is None or not manager.is_in_transaction():
            continue
        log.info("rebalance: aborting the open transaction %s; its inputs are read again", tid)
        if barrier is None:
            await producer.abort_transaction(tid)
        else:
            async with barrier:  # never in the middle of a batch's sends
                await producer.abort_transaction(tid)


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
    faust_recovery.Recovery.on_rebalance = _on_rebalance  # type: ignore[method-assign]
    TransactionManager.commit = _commit  # type: ignore[method-assign]
    TransactionManager.on_partitions_revoked = _abort_open_transactions  # type: ignore[method-assign]
