"""One task: a partition number's records in their reproducible order, one transaction a batch.

A task owns partition ``p`` of every account-keyed input, reads every partition of ``bans``
(they are few), keeps its state in its own store and commits, per batch, in one transaction of
its own: the batch's outputs and its changelog writes, which carry its input offsets (``o:``,
``InputProgress``). The store takes the batch only after that commit
(``marketban.decider.store``). A task's transactions alternate between its producers
(``marketban.decider.transactions.PRODUCERS_PER_TASK``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import BaseModel, Field

from marketban.decider.banview import PersonDecisions, StoredBanView
from marketban.decider.batches import Send, send_grouped
from marketban.decider.handling import handle_in_task
from marketban.decider.ordering import TOPIC_RANK, MergeKey
from marketban.decider.partitioning import partition_of
from marketban.decider.store import BATCH_MARK_KEY, TaskStore
from marketban.domain.bans import BanRecord
from marketban.domain.calendars import MarketCalendar
from marketban.domain.engine import (
    ROUTED,
    AccountState,
    BanOutcome,
    Controllers,
    Engine,
    Output,
    Raised,
    Source,
    State,
)
from marketban.domain.fastpath import json_bytes
from marketban.domain.models import AccountLink
from marketban.domain.proxy import (
    ProxyConfig,
    SentUses,
    TerminalState,
    TerminalUse,
    encode_uses,
)

log = logging.getLogger(__name__)

_NEVER: Final = -1
#: Terminal uses per record: a few hundred bytes each, well inside Kafka's 1 MB message limit.
_USES_PER_RECORD: Final = 1000
_BANS_RANK: Final = TOPIC_RANK["bans"]
_COUNTS_ENCODER: Final = msgspec.json.Encoder()
_COUNTS_DECODER: Final = msgspec.json.Decoder(dict[str, int])


class BanPositions(BaseModel):
    """The next offset of each ``bans`` partition this task has not applied (in its store)."""

    offsets: dict[int, int] = Field(default_factory=dict)


class InputProgress(BaseModel):
    """Where the task's input partitions go on, and the decision counts not yet sent.

    Written with every batch that takes a record or counts a decision, into the changelog in the
    batch's transaction: the task reopens from here, not from the group's offsets
    (docs/architecture.md, "Offsets in the changelog").
    """

    offsets: dict[str, int] = Field(default_factory=dict)  # full topic name -> next offset
    counts: dict[str, int] = Field(default_factory=dict)


class Lane:
    """Records of one input partition waiting in a task, and what is known of what may follow.

    ``confirmed_ms``: the time of the latest fetch response in which this partition had nothing
    more to give (position at its last stable offset). A record delivered by an earlier response
    cannot be preceded by one this partition has yet to deliver. Not one delivered by the same
    response: the broker reads a fetch's partitions one after another, so a partition read before
    the record's may have been read before an earlier record reached it. -1 while it lags.
    """

    __slots__ = ("confirmed_ms", "expect", "partition", "rank", "records", "topic", "tp")

    def __init__(self, tp: TopicPartition, topic: str) -> None:
        self.tp = tp
        self.topic = topic
        self.partition = tp.partition
        self.rank = TOPIC_RANK.get(topic, len(TOPIC_RANK))
        self.records: deque[tuple[ConsumerRecord[bytes, bytes], int]] = deque()
        self.expect = 0  # the lowest offset still to be taken (records below it are repeats)
        self.confirmed_ms = _NEVER

    def add(self, records: list[ConsumerRecord[bytes, bytes]], fetched_ms: int) -> None:
        """Queue freshly fetched records, dropping any this lane already had."""
        for rec in records:
            if rec.offset >= self.expect:
                self.records.append((rec, fetched_ms))
                self.expect = rec.offset + 1

    def reset(self, offset: int) -> None:
        """Forget what is queued; the next record expected is at ``offset``."""
        self.records.clear()
        self.expect = offset
        self.confirmed_ms = _NEVER


class BanLog:
    """Every ``bans`` record this worker read, per partition; each task reads it at its pace."""

    def __init__(self) -> None:
        self.records: dict[int, list[tuple[ConsumerRecord[bytes, bytes], int]]] = {}
        self.start: dict[int, int] = {}  # offset of each partition's first kept record
        self.confirmed_ms: dict[int, int] = {}
        #: What each record did, computed by the first task to take it (handle_in_task).
        #: Oldest first; an OrderedDict, since a dict's first key is found by scanning the slots
        #: of every key deleted before it (forget_outcomes and handling drop from the front).
        self.outcomes: OrderedDict[tuple[int, int], BanOutcome] = OrderedDict()

    def add(self, partition: int, records: list[ConsumerRecord[bytes, bytes]], at: int) -> None:
        """Keep freshly read records of one partition."""
        kept = self.records.setdefault(partition, [])
        if not kept and records:
            self.start[partition] = records[0].offset
        kept.extend((r, at) for r in records)

    def forget_outcomes(self, tasks: list[dict[int, int]]) -> None:
        """Drop the outcomes every one of ``tasks`` (their next ``bans`` offsets) is past."""
        outcomes = self.outcomes
        while outcomes:
            partition, offset = at = next(iter(outcomes))
            if any(offset >= nxt.get(partition, 0) for nxt in tasks):
                return
            del outcomes[at]


@dataclass
class TaskConfig:
    """What every task of a worker shares."""

    partitions: int
    changelog: str
    batch_max: int
    max_idle_s: float
    calendar: MarketCalendar
    topics: dict[str, str]  # input: full name -> spec name
    outputs: dict[str, str]  # output: the engine's name -> full name
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    metrics: Any = None  # marketban.app.metrics.Metrics (observed, never read by the task)
    #: Seconds between a task's decision-counts records (0: one with every batch).
    counts_every_s: float = 1.0
    clock: Callable[[], float] = field(default=time.time)


class FencedError(RuntimeError):
    """A newer owner initialised this task's transactional id: this one is a zombie."""


class Task:
    """Decides the records of one partition number, exactly once."""

    def __init__(  # noqa: PLR0917 - the task's parts, each named
        self,
        number: int,
        config: TaskConfig,
        store: TaskStore,
        producers: tuple[AIOKafkaProducer, ...],
        lanes: list[Lane],
        bans: BanLog,
    ) -> None:
        self.number = number
        self.config = config
        self.store = store
        self.producers = producers
        self._turn = 0  # the producer of the next transaction
        # R8's hops touch state of their own (terminals; suspicions raised), nothing the merged
        # records read or write: they are taken in offset order, outside the merge, unheld.
        self.lanes = [lane for lane in lanes if lane.topic not in ROUTED]
        self.side_lanes = [lane for lane in lanes if lane.topic in ROUTED]
        self.by_tp = {lane.tp: lane for lane in lanes}
        self.bans = bans
        self.positions = store.mapping("x:", BanPositions)
        self.progress = store.mapping("o:", InputProgress)
        #: Each lane's next offset as of the last sealed batch (set when the task opens).
        self.next_offsets: dict[TopicPartition, int] = {}
        #: Of the batches committed: each input partition's next offset, for the group's copy
        #: (``unreported``); what was reported to the group last.
        self._landed: dict[TopicPartition, int] = {}
        self._reported: dict[TopicPartition, int] = {}
        bans_map = store.mapping("b:", BanRecord)
        self.engine = Engine(
            config.calendar,
            State(
                bans=bans_map,
                persons=StoredBanView(
                    bans_map, store.mapping("i:", PersonDecisions), config.calendar
                ),
                links=store.mapping("l:", AccountLink),
                accounts=store.mapping("a:", AccountState),
                controllers=store.mapping("c:", Controllers, sparse=True),
                terminals=store.mapping("t:", TerminalState),
                raised=store.mapping("r:", Raised),
                sent_uses=store.mapping("u:", SentUses),
            ),
            config.proxy,
        )
        self.wake = asyncio.Event()
        self.stopping = False
        #: Set once the task is open (producer, store, positions); whoever clears it closes them.
        self.opened = False
        self.ban_next: dict[int, int] = {}
        # Since when the merge has waited for a partition that may deliver an earlier record.
        # Past max_idle_s it goes on, and keeps going on (Kafka Streams' enforced processing)
        # until a record is taken with every empty partition confirmed: only that resets it.
        self._held_since: float | None = None
        #: Whether the last collect stopped at a held record (one is queued, waiting).
        self._holding = False
        self._sends: list[Send] = []
        self._uses: dict[int, list[TerminalUse]] = {}
        self._verdicts: dict[str, int] = {}
        # Decision counts committed but not yet in a decision-counts record: they travel in the
        # store's InputProgress (see _count).
        self.pending: dict[str, int] = {}
        self._counts_at = 0.0  # monotonic time from which the next counts record is due
        self._offsets: dict[TopicPartition, int] = {}
        # Of the last sealed batch (none yet: set).
        self._sent = asyncio.Event()
        self._sent.set()
        #: Transactions started (``start``) and not yet ended.
        self.in_flight: set[asyncio.Task[None]] = set()
        self.handled = 0

    # ---- opening -------------------------------------------------------------------------------

    def load(self) -> bool:
        """Read the task's positions and pending counts from its store; whether it had any.

        A lane the store has no offset for (a store from before offsets were kept there, or a
        partition never taken from) is left out of ``next_offsets``: the caller gives it one.
        """
        stored = self.positions.get("bans")
        self.ban_next = dict(stored.offsets) if stored else {}
        progress = self.progress.get("inputs")
        self.next_offsets = {}
        self.pending = {}
        if progress is not None:
            self.pending = dict(progress.counts)
            for tp in self.by_tp:
                if tp.topic in progress.offsets:
                    self.next_offsets[tp] = progress.offsets[tp.topic]
        self.store.discard()
        return progress is not None

    def resume_counts(self, metadata: str) -> None:
        """Take the decision counts a group offset's metadata carries (a store without progress).

        Before the counts were kept in the store they travelled in the metadata of the orders
        partition's committed offset; a task opening on such a store takes them from there once.
        """
        self.pending = {}
        if metadata:
            try:
                self.pending = _COUNTS_DECODER.decode(metadata)
            except msgspec.DecodeError:
                log.warning(
                    "task %d: committed offset metadata %r is not decision counts; ignored",
                    self.number, metadata[:80],
                )  # fmt: skip

    def counts_wait(self) -> float | None:
        """Seconds until committed counts are due in a record, or None when none wait."""
        if not self.pending:
            return None
        if self.stopping:
            return 0.0
        return max(self._counts_at - time.monotonic(), 0.0)

    # ---- the merge -----------------------------------------------------------------------------

    def _ban_index(self, partition: int) -> int:
        """Index in the ban log of the next record of ``partition`` this task has to apply."""
        kept = self.bans.records.get(partition, [])
        if not kept:
            return 0
        start = self.bans.start[partition]
        want = self.ban_next.get(partition, start)
        if want < start:
            log.warning(
                "task %d: bans[%d] no longer holds offsets %d-%d (retention); going on from %d",
                self.number, partition, want, start - 1, start,
            )  # fmt: skip
            want = start
        # Offsets are increasing but not contiguous (transaction markers): search.
        lo, hi = 0, len(kept)
        while lo < hi:
            mid = (lo + hi) // 2
            if kept[mid][0].offset < want:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def collect(self) -> int:
        """Handle the records that are ready, in order, up to a batch; how many were handled."""
        cfg = self.config
        heap: list[tuple[MergeKey, int]] = []
        limit = float("inf")
        ban_pos: dict[int, int] = {}
        for i, queued in enumerate(self.lanes):
            if queued.records:
                rec = queued.records[0][0]
                heapq.heappush(heap, (_key(rec, queued.rank), i))
            else:
                limit = min(limit, queued.confirmed_ms)
        nlanes = len(self.lanes)
        for q, kept in self.bans.records.items():
            idx = self._ban_index(q)
            ban_pos[q] = idx
            if idx < len(kept):
                rec = kept[idx][0]
                heapq.heappush(heap, (_key(rec, _BANS_RANK), nlanes + q))
            else:
                limit = min(limit, self.bans.confirmed_ms.get(q, _NEVER))
        for q in range(cfg.partitions):
            if q not in self.bans.records:
                limit = min(limit, self.bans.confirmed_ms.get(q, _NEVER))
        self._prefetch_accounts()
        count = bans_handled = 0
        self._holding = False
        now = datetime.now(UTC)  # wall-clock ok: stamps decided_at only, never decides (R6)
        for side in self.side_lanes:
            while side.records and count < cfg.batch_max:
                rec = side.records.popleft()[0]
                self._offsets[side.tp] = rec.offset + 1
                self._handle(side.topic, rec, now)
                count += 1
        while heap and count < cfg.batch_max:
            _head, i = heap[0]
            lane: Lane | None = self.lanes[i] if i < nlanes else None
            if lane is not None:
                rec, fetched = lane.records[0]
            else:
                q = i - nlanes
                rec, fetched = self.bans.records[q][ban_pos[q]]
            if fetched >= limit:
                # A partition with nothing queued may still deliver an earlier record: wait for
                # its next fetch, at most max_idle_s (then go on: Kafka Streams' max.task.idle).
                clock = time.monotonic()
                if self._held_since is None:
                    self._held_since = clock
                if clock - self._held_since < cfg.max_idle_s:
                    self._holding = True
                    break
            else:
                self._held_since = None
            heapq.heappop(heap)
            if lane is not None:
                lane.records.popleft()
                self._offsets[lane.tp] = rec.offset + 1
                self._handle(cfg.topics[rec.topic], rec, now)
                if lane.records:
                    heapq.heappush(heap, (_key(lane.records[0][0], lane.rank), i))
                else:
                    limit = min(limit, lane.confirmed_ms)
            else:
                q = i - nlanes
                self._handle("bans", rec, now)
                self.ban_next[q] = rec.offset + 1
                if q == self.number:
                    # Its owner reports the ban's offset to the group too: what `feed` waits for
                    # and what lag is measured against (each task's own position is in its store).
                    self._offsets[TopicPartition(rec.topic, q)] = rec.offset + 1
                ban_pos[q] += 1
                bans_handled += 1
                kept = self.bans.records[q]
                if ban_pos[q] < len(kept):
                    heapq.heappush(heap, (_key(kept[ban_pos[q]][0], _BANS_RANK), i))
                else:
                    limit = min(limit, self.bans.confirmed_ms.get(q, _NEVER))
            count += 1
        if bans_handled:
            self.positions["bans"] = BanPositions(offsets=self.ban_next)
        return count

    def _prefetch_accounts(self) -> None:
        """Read the state the next batch's orders read with one multi-get, not a get each."""
        for lane in self.lanes:
            if lane.topic == "orders" and lane.records:
                head = itertools.islice(lane.records, self.config.batch_max)
                self.engine.prefetch_orders(
                    [
                        (rec.key.decode("utf-8", "replace"), rec.value)
                        for rec, _ in head
                        if rec.key is not None and rec.value is not None
                    ]
                )

    def queued(self) -> int:
        """How many input records wait in the task's lanes."""
        return sum(len(lane.records) for lane in self.by_tp.values())

    def waiting(self) -> bool:
        """Whether records are queued (new fetch information may let them go)."""
        return self._holding or any(lane.records for lane in self.by_tp.values())

    def idle_wait(self) -> float | None:
        """Seconds until a held-back record is released anyway, or None when none is held."""
        if not self._holding or self._held_since is None:
            return None
        return max(self.config.max_idle_s - (time.monotonic() - self._held_since), 0.0)

    def _handle(self, topic: str, rec: ConsumerRecord[bytes, bytes], now: datetime) -> None:
        cfg = self.config
        key = rec.key.decode("utf-8", errors="replace") if rec.key is not None else None
        source = Source(topic=rec.topic, partition=rec.partition, offset=rec.offset)
        payload = rec.value if rec.value is not None else b""
        try:
            outputs = handle_in_task(
                self.engine,
                self.number,
                cfg.partitions,
                topic,
                key,
                rec.key,
                payload,
                source,
                now,
                self.bans.outcomes,
            )
        except Exception as exc:  # a bug must not stop enforcement: fail closed, keep going
            log.exception("internal error on %s[%d]@%d", rec.topic, rec.partition, rec.offset)
            error = f"internal error while processing this message: {exc!r}"
            outputs = self.engine.fail_closed(topic, key, payload, source, error)
        metrics = cfg.metrics
        if metrics is not None:
            metrics.count(outputs, topic)
            if topic == "orders":
                metrics.observe_latency(max(cfg.clock() - rec.timestamp / 1000, 0.0))
        self._encode(outputs)
        self.handled += 1

    def _encode(self, outputs: list[Output]) -> None:
        names, partitions, sends = self.config.outputs, self.config.partitions, self._sends
        for topic, key, value in outputs:
            if topic == "terminal-uses" and key is not None and isinstance(value, TerminalUse):
                # One per order: they travel as one record per terminal partition and batch. Only
                # marketban reads this topic, so its partitioner is ours: CRC32, a tenth of the
                # cost of murmur2 in Python, and the same in every worker.
                part = zlib.crc32(key.encode()) % partitions
                self._uses.setdefault(part, []).append(value)
                continue
            if topic == "decisions":
                name = f"verdict:{getattr(value, 'verdict', '')}"
                self._verdicts[name] = self._verdicts.get(name, 0) + 1
            raw_key = key.encode() if key is not None else None
            part = partition_of(raw_key, partitions) if raw_key is not None else self.number
            sends.append((names[topic], part, raw_key, json_bytes(value)))

    def _flush_uses(self) -> None:
        """The batch's terminal uses, as JSON arrays of at most ``_USES_PER_RECORD`` uses."""
        topic = self.config.outputs["terminal-uses"]
        for part, uses in self._uses.items():
            for i in range(0, len(uses), _USES_PER_RECORD):
                chunk = uses[i : i + _USES_PER_RECORD]
                self._sends.append((topic, part, None, encode_uses(chunk)))
        self._uses = {}

    # ---- commit --------------------------------------------------------------------------------

    def seal(self) -> Batch:
        """End the batch: its outputs, state writes and offsets, ready for their transaction.

        The next batch may be handled at once: it reads this one's state writes from the store
        until this one's transaction has committed.
        """
        self._flush_uses()
        offsets, self._offsets = self._offsets, {}
        counted = self._count()
        taken = False
        for tp, offset in offsets.items():
            if tp in self.by_tp:  # not the ban partition its owner reports to the group
                self.next_offsets[tp] = offset
                taken = True
        if taken or counted:
            self.progress["inputs"] = InputProgress(
                offsets={tp.topic: offset for tp, offset in self.next_offsets.items()},
                counts=dict(self.pending),
            )
        staged = self.store.stage()
        sends, self._sends = self._sends, []
        producer = self.producers[self._turn]
        # Batches take turns on the task's producers: see PRODUCERS_PER_TASK.
        self._turn = (self._turn + 1) % len(self.producers)
        changelog: list[Send] = [
            (self.config.changelog, self.number, k, v) for k, v in staged.items()
        ] or [(self.config.changelog, self.number, BATCH_MARK_KEY, None)]
        batch = Batch(sends, changelog, offsets, producer, self._sent)
        self._sent = batch.sent
        return batch

    def _count(self) -> bool:
        """The batch's decisions, counted by verdict for the dashboard, exactly once.

        Every worker follows these counts, not the decisions (docs/architecture.md,
        "Broadcast"). A record per batch would add a partition to every transaction, which
        costs its commit more than its records do; so the counts are sent at most every
        ``counts_every_s``, and until then travel, committed with the batch, in the store's
        ``InputProgress``. A task reopened elsewhere restores them with its store: none is lost
        or repeated. Returns whether the pending counts changed.
        """
        verdicts, self._verdicts = self._verdicts, {}
        pending = self.pending
        for name, count in verdicts.items():
            pending[name] = pending.get(name, 0) + count
        clock = time.monotonic()
        if pending and (self.stopping or clock >= self._counts_at):  # closing: pending goes
            self._send_counts(pending)
            self.pending = {}
            self._counts_at = clock + self.config.counts_every_s
            return True
        return bool(verdicts)

    def _send_counts(self, counts: dict[str, int]) -> None:
        topic = self.config.outputs["decision-counts"]
        self._sends.append((topic, self.number, None, _COUNTS_ENCODER.encode(counts)))

    def start(self, batch: Batch, after: asyncio.Future[None] | None) -> asyncio.Task[None]:
        """``transact`` in the background; the task's loop is woken when it ends."""
        txn = asyncio.create_task(self.transact(batch, after), name=f"task-{self.number}-commit")
        self.in_flight.add(txn)
        txn.add_done_callback(self.in_flight.discard)
        txn.add_done_callback(lambda _: self.wake.set())
        return txn

    async def abandon(self) -> None:
        """Cancel the transactions still in flight (the task is closing after a failure)."""
        for txn in list(self.in_flight):
            txn.cancel()
        for txn in list(self.in_flight):
            with contextlib.suppress(BaseException):
                await txn

    async def transact(self, batch: Batch, after: asyncio.Future[None] | None = None) -> None:
        """One transaction: the batch's outputs and its changelog writes (its input offsets too).

        ``after``: the previous batch's transaction, still committing. This one is sent
        meanwhile, but it commits only once that one has: if that one fails, this one never
        commits (the task reopens from its committed state, which aborts it).
        """
        producer = batch.producer
        try:
            # Every partition gets its records in batch order, and the changelog a batch's
            # records in one run (the store's offset is where its batch ends): the batch before
            # this one must have all its records appended first.
            await batch.after_sent.wait()
            await producer.begin_transaction()
            outputs = await send_grouped(producer, batch.sends)
            futures = await send_grouped(producer, batch.changelog)
            appended = asyncio.gather(*(fut for fut, _ in (*outputs, *futures)))
            appended.add_done_callback(batch.appended)
            if after is not None:
                await after
            # aiokafka commits a transaction whose records failed (a batch that expired waiting
            # for a partition leader is failed, and the commit still sends EndTxn COMMIT): the
            # offsets would commit without the outputs. Every record must be acknowledged first.
            await appended
            await producer.commit_transaction()
        except Exception as exc:
            batch.sent.set()  # the batch after this one fails at ``after`` in its turn
            # The store keeps what it staged: the task closes now and reopens from what is
            # committed (an earlier batch still committing may yet commit and be written).
            if _is_fenced(exc):
                raise FencedError(
                    f"task {self.number}: fenced by a newer owner of its transactional id; "
                    f"its uncommitted batch ({len(batch.sends)} outputs) is dropped"
                ) from exc
            raise
        next_offset = self.store.changelog_offset
        for fut, count in futures:
            meta = await fut  # appended before the commit returned: answered at once
            next_offset = max(next_offset, meta.offset + count)
        self.store.committed(next_offset)
        self._landed.update(batch.offsets)

    def report_start(self) -> None:
        """Have the group told where the task goes on from (its copy may trail the store's)."""
        self._landed.update(self.next_offsets)
        bans_topic = next((t for t, name in self.config.topics.items() if name == "bans"), None)
        own = self.ban_next.get(self.number)
        if bans_topic is not None and own is not None:
            self._landed[TopicPartition(bans_topic, self.number)] = own

    def unreported(self) -> dict[TopicPartition, int]:
        """Committed input offsets the group has not been told of (``reported`` once it has)."""
        reported = self._reported
        return {tp: o for tp, o in self._landed.items() if reported.get(tp) != o}

    def reported(self, offsets: dict[TopicPartition, int]) -> None:
        """The group now holds ``offsets`` (an ``unreported`` of this task)."""
        self._reported.update(offsets)


@dataclass
class Batch:
    """A sealed batch: what its transaction sends, and on which producer."""

    sends: list[Send]
    changelog: list[Send]
    #: Each input partition's next offset after the batch: the group is told once it commits.
    offsets: dict[TopicPartition, int]
    producer: AIOKafkaProducer
    #: Set once every record of the batch before this one is appended (or it failed).
    after_sent: asyncio.Event
    #: This one's.
    sent: asyncio.Event = field(default_factory=asyncio.Event)

    def appended(self, records: asyncio.Future[Any]) -> None:
        """Every record of the batch is appended (or one failed: its transaction reports it)."""
        if not records.cancelled():
            records.exception()
        self.sent.set()


def _key(rec: ConsumerRecord[bytes, bytes], rank: int) -> MergeKey:
    """``ordering.merge_key`` of a fetched record whose topic rank is known."""
    return (rec.timestamp, rank, rec.partition, rec.offset)


def _is_fenced(exc: BaseException) -> bool:
    from aiokafka.errors import (  # noqa: PLC0415 - only on the error path
        InvalidProducerEpoch,
        ProducerFenced,
        TransactionalIdAuthorizationFailed,
    )

    fenced = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)
    return isinstance(exc, fenced)
