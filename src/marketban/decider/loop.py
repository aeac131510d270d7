"""The decider: a consumer group over the account-keyed inputs, a reader of ``bans``, its tasks.

One consumer (group ``<prefix>worker``, ``TaskAssignor``) fetches the account-keyed inputs, handing
each record to the task of its partition number, and every partition of ``bans`` (each worker is
assigned all of it) into a log all its tasks share. Each task runs its own loop: take the ready
records in order, decide, commit one transaction. On assignment, per task and in this order:
its producer is initialised (which fences a zombie that still holds the task and ends its open
transaction), the store is restored, the lanes are positioned at the offsets it holds, then the
task runs. On revocation each task finishes the batch it is committing and closes. The group's
committed offsets are a copy, told after each commit (``_report``): for lag tools and ``feed``;
a task follows them only past its store's (a partition skipped on purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Final

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    IllegalStateError,
    InconsistentGroupProtocolError,
    KafkaError,
)
from aiokafka.structs import OffsetAndMetadata

from marketban.decider.assignor import TaskAssignor
from marketban.decider.forgotten import settle_forgotten, wait_for_leaders
from marketban.decider.partitioning import ACCOUNT_TOPICS
from marketban.decider.restore import Ends, restore
from marketban.decider.store import TaskStore
from marketban.decider.task import BanLog, FencedError, Lane, Task, TaskConfig
from marketban.decider.transactions import (
    PRODUCERS_PER_TASK,
    RETRY_BACKOFF_MS,
    task_transactional_id,
    tune_transaction_retries,
)
from marketban.domain.calendars import MarketCalendar
from marketban.domain.engine import Engine
from marketban.domain.models import OUTPUT_TOPICS
from marketban.settings import Settings, proxy_config

log = logging.getLogger(__name__)

#: Records a task may have queued before its partitions are paused (bounded memory).
MAX_QUEUED: Final = 5_000
#: The broker answers a fetch as soon as data arrives, and a held record makes a tick (_tick),
#: so this bounds only an idle fetch: how often an idle worker fetches all its partitions, which
#: is most of its idle cost (docs/benchmarks.md, "Holding back for the order").
_FETCH_WAIT_MS: Final = 100
_POLL_MS: Final = 100
_TICK_EVERY_S: Final = 0.001
#: Between two attempts at joining a group that members of another version hold.
_REJOIN_S: Final = 1.0
#: After a fetch that failed, before the next (not Final: a unit test makes it 0).
_FETCH_RETRY_S = 0.5
#: How long fetches may fail before the worker reports itself not ready and logs an ERROR (then
#: every ``_LOG_AGAIN_S``). A broker restarting fails a few; a batch in a codec this process
#: cannot read or an ACL that refuses an input topic fails every one, and nothing is decided.
_FETCH_FAILING_S = 5.0
#: How often the consumer refreshes the cluster's metadata. A partition added to an input topic
#: shows there, and aiokafka then rejoins the group, where ``_check_layout`` sees it: producers
#: refresh every 5 minutes by default and send to the new partition from then on, orders this
#: worker never reads; it should not take as long to say so. One Metadata request each time.
_METADATA_MAX_AGE_MS: Final = 10_000
#: Attempts at reading a task's committed offsets while the coordinator is not ready.
_COMMITTED_TRIES: Final = 40
_COMMITTED_RETRY_S = 0.25  # between them (not Final: a unit test makes it 0)
#: How often an idle task's changelog partition is checked for a hanging transaction.
HANGING_CHECK_S: Final = 15.0
#: Least time between two reports of committed offsets to the group in a backlog (``_reports``).
REPORT_EVERY_S: Final = 0.05
#: How long one report may take before it is given up (the next one retries it); a task closing
#: waits less, since a revocation or a stop waits for it (the cluster may be away).
_REPORT_WITHIN_S: Final = 10.0
_REPORT_CLOSING_S: Final = 2.0
#: After a report that failed, before the next try (not Final: a unit test makes it 0).
_REPORT_RETRY_S = 0.2
#: How long reports may fail before it is logged (then again as often).
_REPORT_WARN_S: Final = 30.0
#: Least time between two log lines of the same repeated error (``_log_due``).
_LOG_AGAIN_S: Final = 30.0


class Decider:
    """Runs the tasks this worker is assigned; the Faust app starts and stops it."""

    def __init__(
        self,
        settings: Settings,
        calendar: MarketCalendar,
        metrics: Any = None,  # noqa: ANN401
    ) -> None:
        s = settings
        self.settings = s
        self.topics = {s.topic(t): t for t in ACCOUNT_TOPICS}
        self.topics[s.topic("bans")] = "bans"
        # R8's hops: partition p of each is task p's too (keyed by terminal, then by account).
        self.topics.update({full: name for name, full in s.routed_topics.items()})
        self.config = TaskConfig(
            partitions=s.topic_partitions,
            changelog=s.changelog_topic,
            batch_max=s.batch_max,
            max_idle_s=s.max_task_idle,
            counts_every_s=s.decision_counts_every,
            calendar=calendar,
            topics=self.topics,
            outputs={
                **{name: s.topic(name) for name in OUTPUT_TOPICS},
                "ban-windows": s.ban_windows_topic,
                "decision-counts": s.decision_counts_topic,
                **s.routed_topics,
            },
            proxy=proxy_config(s),
            metrics=metrics,
        )
        self.assignor = TaskAssignor(s.web_url, (s.topic("bans"), s.ticks_topic))
        #: Every topic of ours a task's transaction can touch (wait_for_leaders adds Kafka's own).
        self._touched = (
            *self.topics, s.ticks_topic, s.changelog_topic, *self.config.outputs.values(),
        )  # fmt: skip
        self.tasks: dict[int, Task] = {}
        self.bans = BanLog()
        self.bans_loaded = asyncio.Event()
        self.rebalancing = True
        self.fenced = 0
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._bans_targets: dict[TopicPartition, int] = {}
        self._ticker: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None  # reads committed offsets' metadata
        self._ends: Ends | None = None  # changelog partitions' stable offsets and ends
        self._ticked = 0.0
        self._paused: set[int] = set()
        self._committed = asyncio.Event()  # a batch committed since the last report
        self._logged: dict[str, float] = {}  # repeated error -> when it was logged (_log_due)
        self._fetch_failing_since: float | None = None  # monotonic; None: the last fetch worked
        #: Topics this worker reads whose partition count is not the configured one -> theirs.
        self.layout_errors: dict[str, int] = {}
        self._generation = 0
        #: Tasks whose changelog partition holds a hanging transaction: task -> its first offset.
        self.hanging: dict[int, int] = {}

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group and start reading."""
        tune_transaction_retries()
        _quiet_unretrieved_kafka_errors(asyncio.get_running_loop())
        s = self.settings
        self._consumer = AIOKafkaConsumer(
            **s.kafka(),
            group_id=s.app_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            partition_assignment_strategy=(self.assignor,),
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=max(int(s.session_timeout * 1000) // 4, 500),
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            max_partition_fetch_bytes=1024 * 1024,
            metadata_max_age_ms=_METADATA_MAX_AGE_MS,
        )
        self._ticker = AIOKafkaProducer(**s.kafka(), acks=1, linger_ms=0)
        await self._ticker.start()
        self._admin = AIOKafkaAdminClient(**s.kafka())
        await self._admin.start()
        self._ends = Ends(s.kafka())
        await self._consumer.start()
        self._consumer.subscribe([*self.topics, s.ticks_topic], listener=_Listener(self))
        self._loops = [
            asyncio.create_task(self._fetch(), name="decider-fetch"),
            asyncio.create_task(self._watch_hanging(), name="decider-hanging"),
            asyncio.create_task(self._reports(), name="decider-reports"),
        ]

    async def stop(self) -> None:
        """Finish the batches being committed, close the tasks and the consumers."""
        for loop in self._loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await self._close_tasks()
        if self._ends is not None:
            await self._ends.stop()
        if self._consumer is not None:
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()
        if self._ticker is not None:
            await _close_producer(self._ticker)
        if self._admin is not None:
            with contextlib.suppress(KafkaError):
                await self._admin.close()

    def readiness(self) -> dict[str, bool]:
        """What must hold before this worker decides: tasks assigned and restored, bans read."""
        return {
            "partitions_assigned": not self.rebalancing,
            "tables_recovered": not self.rebalancing and len(self.tasks) == len(self._runs),
            "bans_read": self.bans_loaded.is_set(),
            "fetching": self.fetch_failing_for() < _FETCH_FAILING_S,
            "topic_layout": not self.layout_errors,
        }

    def fetch_failing_for(self) -> float:
        """For how long every fetch has failed, in seconds (0 if the last one worked)."""
        since = self._fetch_failing_since
        return 0.0 if since is None else time.monotonic() - since

    def engine_for(self, account_id: str) -> Engine | None:
        """The engine of the local task that owns ``account_id``, or None."""
        from marketban.decider.partitioning import partition_of  # noqa: PLC0415

        task = self.tasks.get(partition_of(account_id.encode(), self.config.partitions))
        return task.engine if task is not None and task.number in self._runs else None

    def owner_url(self, account_id: str) -> str | None:
        """The advertised URL of the worker that owns ``account_id``'s task, when known."""
        from marketban.decider.partitioning import partition_of  # noqa: PLC0415

        if self.rebalancing:
            return None
        return self.assignor.owners.get(partition_of(account_id.encode(), self.config.partitions))

    def lag(self) -> dict[tuple[str, int], int]:
        """Records each assigned input partition has not handled yet (highwater minus handled)."""
        consumer = self._consumer
        out: dict[tuple[str, int], int] = {}
        if consumer is None:
            return out
        for task in list(self.tasks.values()):
            for lane in task.by_tp.values():
                with contextlib.suppress(AssertionError):
                    high = consumer.highwater(lane.tp)
                    if high is not None:
                        done = lane.expect - len(lane.records)
                        out[lane.tp.topic, lane.tp.partition] = max(high - done, 0)
        return out

    def sizes(self) -> dict[str, int]:
        """Estimated keys per local task store (RocksDB's own estimate)."""
        return {f"task_{p}": t.store.estimated_keys() for p, t in list(self.tasks.items())}

    # ---- reading -------------------------------------------------------------------------------

    async def _fetch(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by start()
        bans_topic = self.settings.topic("bans")
        ticks_topic = self.settings.ticks_topic
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=10_000)
            except InconsistentGroupProtocolError:
                await self._wait_for_older_members()
                continue
            except KafkaError as exc:
                self._fetch_failed(exc)
                await asyncio.sleep(_FETCH_RETRY_S)
                continue
            if self._fetch_failing_since is not None:
                log.info("fetching again after %.1fs of failed fetches", self.fetch_failing_for())
                self._fetch_failing_since = None
            # A record's fetch time is its response's; an empty partition confirms it once a
            # later response shows that partition with nothing more (Lane.confirmed_ms, read by
            # each task just before it takes records).
            woken: set[int] = set()
            for tp, records in batch.items():
                if tp.topic == ticks_topic:
                    continue  # only there to make the broker answer (_tick)
                fetched = consumer.last_poll_timestamp(tp) or 0
                if tp.topic == bans_topic:
                    self.bans.add(tp.partition, records, fetched)
                    woken.update(self.tasks)
                    continue
                task = self.tasks.get(tp.partition)
                lane = task.by_tp.get(tp) if task is not None else None
                if lane is None:
                    continue  # not (or no longer) this worker's: its owner fetches it
                lane.add(records, fetched)
                woken.add(tp.partition)
            loading = not self.bans_loaded.is_set() and self._bans_targets
            if loading and await _reached(consumer, self._bans_targets):
                kept = sum(map(len, self.bans.records.values()))
                log.info("bans: read to the end (%d records)", kept)
                self.bans_loaded.set()
            for task in list(self.tasks.values()):
                if task.queued() > MAX_QUEUED and task.number not in self._paused:
                    consumer.pause(*task.by_tp)
                    self._paused.add(task.number)
                if task.number in woken or task.waiting():
                    task.wake.set()

    def _fetch_failed(self, exc: KafkaError) -> None:
        """Log a failed fetch: the first of a run, then an ERROR once it has lasted."""
        if self._fetch_failing_since is None:
            self._fetch_failing_since = time.monotonic()
            log.warning("fetch failed (%s); retrying", exc)
            return
        failing = self.fetch_failing_for()
        if failing >= _FETCH_FAILING_S and self._log_due("fetch"):
            log.error(
                "no fetch has worked for %.0fs (%s): nothing is decided until one does; "
                "/health/ready reports fetching=false",
                failing, exc,
            )  # fmt: skip

    async def _wait_for_older_members(self) -> None:
        """Members of another version hold the group: say so (every 30 s), try again soon."""
        if self._log_due("another version"):
            log.error(
                "group %s has members of another marketban version (their task assignor is "
                "not %s); this worker joins once all of them have stopped (docs/operations.md, "
                "'Upgrading')",
                self.settings.app_id, self.assignor.name,
            )  # fmt: skip
        await asyncio.sleep(_REJOIN_S)

    def _log_due(self, what: str) -> bool:
        """Whether the repeated error ``what`` may be logged now: once every ``_LOG_AGAIN_S``."""
        now, last = time.monotonic(), self._logged.get(what)
        if last is not None and now - last < _LOG_AGAIN_S:
            return False
        self._logged[what] = now
        return True

    async def _confirm(self, task: Task) -> None:
        """What the consumer knows now of the task's empty partitions (Lane.confirmed_ms)."""
        for lane in task.lanes:
            lane.confirmed_ms = await self._confirmed(lane.tp)
        bans_topic = self.settings.topic("bans")
        for part in range(self.config.partitions):
            tp = TopicPartition(bans_topic, part)
            self.bans.confirmed_ms[part] = await self._confirmed(tp)

    async def _confirmed(self, tp: TopicPartition) -> int:
        """When the consumer last saw ``tp`` with nothing more to give (ms), or -1."""
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by start()
        try:
            position = await consumer.position(tp)
            lso = consumer.last_stable_offset(tp)
            polled = consumer.last_poll_timestamp(tp)
        except (AssertionError, KafkaError):
            return -1  # not assigned (being revoked)
        if lso is None or polled is None or position < lso:
            return -1
        return int(polled)

    async def _watch_hanging(self) -> None:
        """Report a transaction left undecided in an idle task's changelog partition.

        Only a task's own producers write its changelog partition, so with none of its
        transactions in flight the partition's last stable offset is its end. Kafka's transaction
        coordinator can still leave it short: it skips the markers of a partition that has no
        leader at that moment, and completes the transaction (a one-node cluster's restart does
        this; docs/operations.md). Every later record of the partition then waits for a
        read_committed reader. Nothing here can end it without writing records; it is reported.
        """
        ends = self._ends
        assert ends is not None  # noqa: S101 - set by start()
        seen: dict[int, tuple[int, int]] = {}  # task -> (last stable offset, records handled)
        while True:
            await asyncio.sleep(HANGING_CHECK_S)
            idle = {
                n: t
                for n, t in list(self.tasks.items())
                if n in self._runs and not t.in_flight and not t.waiting()
            }
            tps = {n: TopicPartition(self.config.changelog, n) for n in idle}
            try:
                lso = await ends.stable(list(tps.values())) if tps else {}
                end = await ends.end(list(tps.values())) if tps else {}
            except KafkaError:
                continue
            samples = {n: (lso[tp], end[tp], idle[n].handled) for n, tp in tps.items()}
            now = hanging_changelogs(seen, samples)
            for number, first in now.items():
                if self.hanging.get(number) != first:
                    log.error(
                        "task %d: a transaction hangs undecided in %s from offset %d: its "
                        "records and every later one are invisible to read_committed "
                        "readers. Find it with kafka-transactions.sh find-hanging; see "
                        "docs/operations.md before aborting it",
                        number, tps[number], first,
                    )  # fmt: skip
            self.hanging = now
            seen = {n: (at, done) for n, (at, end_, done) in samples.items() if at < end_}

    # ---- tasks ---------------------------------------------------------------------------------

    async def _run(self, task: Task) -> None:
        """The task's loop: ready records in order, decided, committed; until stopped.

        Under a backlog (a full batch) the next batch is handled while the one before it commits
        (two at most in flight): its transaction is sent meanwhile and commits once that one has.
        """
        committing: asyncio.Task[None] | None = None
        try:
            while not task.stopping:
                task.wake.clear()
                if committing is not None and committing.done():
                    await self._landed(task, committing)  # a failed commit ends the loop
                    committing = None
                await self._confirm(task)
                handled = task.collect()
                if handled or task.counts_wait() == 0.0:
                    txn = task.start(task.seal(), committing)
                    if committing is not None:
                        # At most two in flight (and the next batch's producer must be free).
                        await self._landed(task, committing)
                    committing = txn
                    if handled < self.config.batch_max:
                        # No backlog: the records that arrive meanwhile wait for this commit and
                        # go in one batch after it. Overlapping them costs every transaction
                        # more than it saves (measured: p50 65-82 ms serial, 117 overlapped).
                        await self._landed(task, txn)
                        committing = None
                    continue
                idle = task.idle_wait()
                if idle is not None:
                    self._tick()
                counts = task.counts_wait()
                wait = min((w for w in (idle, counts) if w is not None), default=None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(task.wake.wait(), wait)
            if task.counts_wait() is not None:
                # Counts not yet sent go now: a dashboard need not wait for the next owner.
                committing = task.start(task.seal(), committing)
            if committing is not None:
                await self._landed(task, committing)
        except FencedError as exc:
            # A zombie: the task is another worker's now. It closes here; the next assignment
            # (which the group is already preparing) decides where it opens again.
            self.fenced += 1
            log.warning("%s", exc)
            self._runs.pop(task.number, None)
            await self._discard(task)
        except asyncio.CancelledError:
            await task.abandon()
            raise
        except KafkaError as exc:
            # The cluster went away mid-batch (the broker restarting): nothing was taken into
            # the store, so reopening from the committed state loses and repeats nothing.
            log.warning(
                "task %d: commit failed (%s: %s); reopening it from its committed state",
                task.number, type(exc).__name__, exc,
            )  # fmt: skip
            self._runs.pop(task.number, None)
            asyncio.get_running_loop().call_soon(self._schedule_reopen, task.number, task)
        except Exception:
            log.exception("task %d failed; reopening it from its committed state", task.number)
            self._runs.pop(task.number, None)
            asyncio.get_running_loop().call_soon(self._schedule_reopen, task.number, task)

    async def _landed(self, task: Task, txn: asyncio.Task[None]) -> None:
        """Wait for a batch's transaction (its failure is raised), then what follows a commit.

        Waited for, not awaited: cancelling the loop must not cancel a commit by the way (a
        closing task ends its transactions itself, ``Task.abandon``).
        """
        await asyncio.wait({txn})
        txn.result()
        self._committed.set()
        self._maybe_resume(task)
        self.bans.forget_outcomes([t.ban_next for t in self.tasks.values()])

    async def _reports(self) -> None:
        """Tell the group the committed offsets once a batch commits: in a backlog, every 50 ms.

        Otherwise each commit is reported at once: ``feed`` waits for every record it sends to
        be reported applied, and the record it sends next is queued (held for the merge) while
        the commits of the one before still land (a ban commits in every task, an order's
        terminal use in another); a report costs one request, outside the transactions.
        """
        last = -REPORT_EVERY_S
        failing_since: float | None = None
        while True:
            await self._committed.wait()
            wait = last + REPORT_EVERY_S - time.monotonic()
            if wait > 0 and self._backlogged():
                await asyncio.sleep(wait)
            self._committed.clear()
            last = time.monotonic()
            if await self._report():
                failing_since = None
                continue
            # A rebalance under way, the coordinator moving: no commit may follow to carry it
            # (the input may have ended), so it is tried again by itself.
            if failing_since is None:
                failing_since = last
            elif last - failing_since >= _REPORT_WARN_S:
                log.warning(
                    "the group's committed offsets have not been updated for %.0fs "
                    "(decisions go on; lag tools and `feed` see them late)",
                    last - failing_since,
                )
                failing_since = last
            await asyncio.sleep(_REPORT_RETRY_S)
            self._committed.set()

    def _backlogged(self) -> bool:
        """Whether a task has more input queued than one batch takes (commits back to back)."""
        most = self.config.batch_max
        return any(t.queued() >= most for t in list(self.tasks.values()))

    async def _report(self, within_s: float = _REPORT_WITHIN_S) -> bool:
        """Commit the tasks' committed input offsets to the group, outside any transaction.

        A copy for lag tools, ``feed`` and ``wait_caught_up``: it is written only after the
        transaction that holds the offsets (in the changelog) has committed, so it is never
        ahead of what was decided, and a task opening follows it only where it is ahead of
        its store's (moved on purpose). Whether the group holds them now (False: try again).
        """
        consumer = self._consumer
        if consumer is None:
            return True  # stopped: nothing left to tell
        tasks = [(t, t.unreported()) for t in list(self.tasks.values())]
        offsets = {tp: o for _t, found in tasks for tp, o in found.items()}
        if not offsets:
            return True
        try:
            await asyncio.wait_for(consumer.commit(offsets), within_s)
        except (KafkaError, IllegalStateError, TimeoutError) as exc:
            log.debug("committed offsets not reported to the group yet (%r)", exc)
            return False
        except Exception:  # any other: the reports must go on (``feed`` waits for them)
            if self._log_due("report"):
                log.exception("committed offsets not reported to the group; trying again")
            return False
        for task, found in tasks:
            task.reported(found)
        return True

    async def _discard(self, task: Task) -> None:
        """Close a task that no longer runs, unless the assignment has already replaced it."""
        if self.tasks.get(task.number) is task:
            del self.tasks[task.number]
        await task.abandon()
        if task.opened:
            task.opened = False
            await _close_producers(task.producers)
            task.store.close()

    def _tick(self) -> None:
        """Append a tick, so the fetch in flight is answered now, every partition read afresh.

        A record held back waits for a response read after it arrived (Lane.confirmed_ms); an
        idle fetch would only come back after fetch_max_wait. One tick every millisecond at most.
        """
        now = time.monotonic()
        if self._ticker is None or now - self._ticked < _TICK_EVERY_S:
            return
        self._ticked = now
        ticker = self._ticker
        self._loops.append(asyncio.create_task(_send_tick(ticker, self.settings.ticks_topic)))
        if len(self._loops) > 64:  # noqa: PLR2004 - finished ticks are dropped now and then
            self._loops = [t for t in self._loops if not t.done()]

    def _schedule_reopen(self, number: int, failed: Task | None = None) -> None:
        self._loops.append(asyncio.create_task(self._reopen(number, failed)))

    async def _reopen(self, number: int, failed: Task | None = None) -> None:
        if failed is not None:
            await self._discard(failed)
        for attempt in range(1000):
            if self.rebalancing or number not in self.assignor.tasks:
                return  # the assignment will open it (or it went elsewhere)
            try:
                await self._open_task(number)
            except Exception as exc:  # noqa: BLE001 - Kafka, RocksDB (a lock not yet freed): retry
                log.warning("task %d: reopening failed (%r); retry %d", number, exc, attempt + 1)
                await asyncio.sleep(min(0.5 * (attempt + 1), 5))
            else:
                return

    def _maybe_resume(self, task: Task) -> None:
        if (
            task.number in self._paused
            and self._consumer is not None
            and task.queued() < MAX_QUEUED // 2
        ):
            self._paused.discard(task.number)
            with contextlib.suppress(AssertionError, KafkaError):
                self._consumer.resume(*task.by_tp)

    async def _open_task(self, number: int) -> None:
        consumer, admin, ends = self._consumer, self._admin, self._ends
        assert consumer is not None  # noqa: S101 - set by start()
        assert admin is not None  # noqa: S101 - set by start()
        assert ends is not None  # noqa: S101 - set by start()
        s = self.settings
        tps = [TopicPartition(t, number) for t, name in self.topics.items() if name != "bans"]
        lanes = [Lane(tp, self.topics[tp.topic]) for tp in tps]
        producers = tuple(
            AIOKafkaProducer(
                **s.kafka(),
                transactional_id=task_transactional_id(s.app_id, number, turn),
                # Back-to-back transactions: see marketban.decider.transactions.
                retry_backoff_ms=RETRY_BACKOFF_MS,
                linger_ms=1,
                max_batch_size=1024 * 1024,
                request_timeout_ms=30_000,
            )
            for turn in range(PRODUCERS_PER_TASK)
        )
        generation = self._generation

        def current() -> None:
            # A rebalance that began while this task was opening owns what follows.
            if self._generation != generation:
                raise _SupersededError

        store: TaskStore | None = None
        task: Task | None = None
        try:
            # Starting a producer initialises its transactional id: a zombie holding this task
            # is fenced and its open transactions ended, on every id, before the offsets are read.
            await wait_for_leaders(admin, self._touched)
            current()
            await _start_producers(producers)
            current()
            # Only now does the changelog show a transaction the coordinator no longer knows.
            store = TaskStore(Path(s.data_dir) / s.app_id / f"task-{number}")
            await settle_forgotten(
                ends,
                producers,
                TopicPartition(s.changelog_topic, number),
                taken=store.changelog_offset,
            )
            current()
            task = Task(number, self.config, store, producers, lanes, self.bans)
            self.tasks[number] = task  # the fetch loop queues its records from now on
            await restore(s.kafka(), ends, store, s.changelog_topic, number)
            current()
            # The offsets committed with the state: the store's, restored with it. The group's
            # copy is never ahead of them unless it was moved on purpose (an operator skipping
            # input) or by a worker that keeps its offsets there only: then it is followed.
            had_progress = task.load()
            found = await committed_offsets(admin, s.app_id, tps)
            for lane in lanes:
                stored = task.next_offsets.get(lane.tp)
                mark = found.get(lane.tp)
                offset = mark.offset if mark is not None and mark.offset >= 0 else None
                if stored is not None and (offset is None or offset <= stored):
                    offset = stored
                elif stored is not None:
                    log.warning(
                        "task %d: the group's committed offset of %s is %d, ahead of the %d its "
                        "store holds: going on from the group's (records between are skipped)",
                        number, lane.tp.topic, offset, stored,
                    )  # fmt: skip
                if offset is None:
                    offset = (await consumer.beginning_offsets([lane.tp]))[lane.tp]
                task.next_offsets[lane.tp] = offset
                if not had_progress and mark is not None and lane.topic == "orders":
                    task.resume_counts(mark.metadata)
                current()
                consumer.seek(lane.tp, offset)
                lane.reset(offset)
            self._maybe_resume(task)  # records queued while restoring are gone with the reset
            # A worker that died after a commit left the group's copy behind: it catches up now,
            # not only with the task's next batch (a quiet partition may not have one for long).
            task.report_start()
            self._committed.set()
        except BaseException as exc:
            if task is not None and self.tasks.get(number) is task:
                del self.tasks[number]
            await _close_producers(producers)
            if store is not None:
                store.close()
            if isinstance(exc, _SupersededError):
                log.info("task %d: not opened, the assignment changed meanwhile", number)
                return
            raise
        task.opened = True
        self._runs[number] = asyncio.create_task(self._run(task), name=f"task-{number}")
        log.info("task %d: open", number)

    async def _close_tasks(self) -> None:
        # Tasks still opening see the new generation and close themselves.
        self._generation += 1
        runs, self._runs = self._runs, {}
        for number, run in runs.items():
            task = self.tasks.get(number)
            if task is not None:
                task.stopping = True
                task.wake.set()
            # The batch being committed finishes; one that cannot (the cluster is away) is
            # cancelled: its transaction then never commits and the store never took it.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(run), 10)
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run
        await self._report(_REPORT_CLOSING_S)  # while this generation may still commit
        tasks, self.tasks = self.tasks, {}
        for task in tasks.values():
            if task.opened:  # one still opening closes itself (it sees the new generation)
                task.opened = False
                await _close_producers(task.producers)
                task.store.close()
        self._paused.clear()

    async def _seek_bans(self, tps: list[TopicPartition]) -> None:
        """Every worker reads all of bans: go on after what the ban log already holds."""
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by start()
        beginning = await consumer.beginning_offsets(tps)
        for tp in tps:
            kept = self.bans.records.get(tp.partition)
            consumer.seek(tp, kept[-1][0].offset + 1 if kept else beginning[tp])
        self._bans_targets = await consumer.end_offsets(tps)

    async def on_revoked(self) -> None:
        """Rebalance: stop every task (its committing batch finishes or aborts)."""
        self.rebalancing = True
        await self._close_tasks()

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Rebalance done: open the tasks of the assigned partition numbers."""
        bans_topic = self.settings.topic("bans")
        shared = {bans_topic, self.settings.ticks_topic}
        numbers = sorted({tp.partition for tp in partitions if tp.topic not in shared})
        self._check_layout()
        await self._seek_bans([tp for tp in partitions if tp.topic == bans_topic])
        started = time.monotonic()
        results = await asyncio.gather(
            *(self._open_task(n) for n in numbers), return_exceptions=True
        )
        for number, result in zip(numbers, results, strict=True):
            if isinstance(result, BaseException):
                log.error("task %d could not be opened; retrying", number, exc_info=result)
                self._schedule_reopen(number)
        self.rebalancing = False
        log.info("tasks %s open in %.1fs", numbers, time.monotonic() - started)

    def _check_layout(self) -> None:
        """Note (and log) the topics read whose partition count is not the configured one.

        The worker starts only on a right layout (``prepare_topics``), so a wrong one is
        partitions added to a topic while it ran. Producers then send part of the keys to the new
        partitions, which no task reads (their orders get no decision), and place others where
        murmur2 mod the configured count says they do not belong (rejected, orders blocked): the
        tasks keep deciding what is still placed as before, and the worker says it is not ready.
        """
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by start()
        expected = self.config.partitions
        counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in self.topics}
        wrong = {t: n for t, n in sorted(counts.items()) if n and n != expected}
        if wrong and wrong != self.layout_errors:
            log.error(
                "topics %s no longer have MARKETBAN_TOPIC_PARTITIONS=%d partitions: orders in "
                "the added partitions get no decision, records the new count moves to another "
                "partition are rejected (orders blocked); partitions cannot be taken away: move "
                "to a deployment with the new count (docs/operations.md, Changing the partition "
                "count)",
                wrong,
                expected,
            )
        self.layout_errors = wrong


class _SupersededError(Exception):
    """The assignment changed while a task was opening."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc] # aiokafka is untyped
    def __init__(self, decider: Decider) -> None:
        self._decider = decider

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:  # noqa: ARG002
        await self._decider.on_revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._decider.on_assigned(assigned)


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets of ``tps`` with their metadata (offset -1: none yet).

    A task opening compares them with its store's: they are followed only where the store holds
    none (a store from before it kept them, a partition never taken from) or they are ahead.

    A coordinator that is not ready (still loading the group after a broker restart, or moved)
    answers with an error and no partitions. aiokafka's admin client reads only the partitions'
    error codes, not the reply's own (OffsetFetch v2+), so that answer comes back as an empty
    dict, which would read as "nothing committed" and send the task back to the beginning of
    its partitions. A real answer names every partition asked for, so one that does not is
    retried, and after ``_COMMITTED_TRIES`` it is an error: the task is reopened later, never
    started from offsets it was not given.
    """
    for attempt in range(_COMMITTED_TRIES):
        try:
            found: dict[TopicPartition, OffsetAndMetadata]
            found = await admin.list_consumer_group_offsets(group, partitions=tps)
        except KafkaError as exc:
            if not exc.retriable or attempt == _COMMITTED_TRIES - 1:
                raise
        else:
            if all(tp in found for tp in tps):
                return found
        await asyncio.sleep(_COMMITTED_RETRY_S)
    raise CoordinatorNotAvailableError(
        f"group {group}: no committed offsets for {len(tps)} partitions after "
        f"{_COMMITTED_TRIES} tries; the group coordinator is not ready"
    )


async def _reached(consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> bool:
    for tp, target in targets.items():
        if await consumer.position(tp) < target:
            return False
    return True


def _quiet_unretrieved_kafka_errors(loop: asyncio.AbstractEventLoop) -> None:
    """One warning line, not a traceback, for aiokafka's own leftovers of a failed commit.

    A transaction that fails (the broker away) fails the futures aiokafka shields inside its
    producer too; nobody awaits those, and asyncio reports each as an error with a traceback.
    The commit's failure is already handled and logged by the task.
    """
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, KafkaError):
            log.warning("%s: %r", context.get("message", "unretrieved"), exc)
        elif isinstance(exc, KeyError) and "MessageAccumulator" in repr(context.get("handle")):
            # aiokafka, after its sender failed all pending batches, has each batch's own
            # completion callback remove it once more; the batch is already failed and gone.
            log.warning("aiokafka dropped an already failed batch twice (%r); harmless", exc)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


async def _send_tick(producer: AIOKafkaProducer, topic: str) -> None:
    with contextlib.suppress(KafkaError):
        await producer.send(topic, b"", partition=0)


async def _close_producer(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()


async def _start_producers(producers: tuple[AIOKafkaProducer, ...]) -> None:
    """Start them all; the first failure is raised once every start has ended.

    None is left starting when the task closes them: a late one would initialise its id after
    the next attempt's producer and fence it.
    """
    started = await asyncio.gather(*(p.start() for p in producers), return_exceptions=True)
    for result in started:
        if isinstance(result, BaseException):
            raise result


async def _close_producers(producers: tuple[AIOKafkaProducer, ...]) -> None:
    await asyncio.gather(*(_close_producer(p) for p in producers))


def hanging_changelogs(
    before: dict[int, tuple[int, int]], now: dict[int, tuple[int, int, int]]
) -> dict[int, int]:
    """Idle tasks whose changelog's last stable offset stayed short of its end: task -> offset.

    ``before``: task -> (last stable offset, records handled) where the previous check found the
    changelog short; ``now``: task -> (last stable offset, end offset, records handled). Short at
    two checks in a row, at the same offset, with no record handled in between: no transaction of
    the task was open meanwhile, and none takes that long.
    """
    out: dict[int, int] = {}
    for number, (lso, end, handled) in now.items():
        if lso < end and before.get(number) == (lso, handled):
            out[number] = lso
    return out
