"""The Faust worker: thin glue that decodes, looks up tables, calls the engine and sends.

Topology (docs/architecture.md): one agent reads every account-keyed input topic (accounts,
evidence, holdings, orders, executions — co-partitioned, so one account's records meet in one
partition, in order); one agent reads ``bans`` (keyed by decision_id) and publishes each change as
a BanWindows record to the compacted ``ban-windows`` topic, which every worker follows into its
BanView. Processing is exactly-once: outputs, table changelogs and input offsets commit together.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer
from faust.exceptions import ConsumerNotStarted
from faust.streams import _current_event
from faust.types import StreamT

from marketban.adapters import faust_fixes
from marketban.adapters.api import Api
from marketban.adapters.follower import TopicFollower
from marketban.adapters.logs import logging_config
from marketban.adapters.metrics import Metrics
from marketban.adapters.tables import ModelTable
from marketban.domain.bans import BanRecord, BanView, BanWindows
from marketban.domain.calendars import MarketCalendar
from marketban.domain.engine import AccountState, Engine, Output, Source, State
from marketban.domain.fastpath import json_bytes
from marketban.domain.models import AccountLink
from marketban.service.monitor import Disposition, ViolationLog
from marketban.settings import Settings

log = logging.getLogger(__name__)

ACCOUNT_TOPICS = ("accounts", "evidence", "holdings", "orders", "executions")
_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def source_transactional_id(app: Any, event: Any) -> str:  # noqa: ANN401 - faust is untyped
    """The transaction in which Faust will commit this event's input offset.

    Faust's own ``topic.send`` picks the transaction from the *destination* partition, so an
    output and the offset of the input that caused it could commit in different transactions
    (a SIGKILL between the two commits duplicated decisions). Sending under the source's
    transactional id puts output, table changelog and input offset in one transaction.
    """
    msg = event.message
    group = app.assignor.group_for_topic(msg.topic)
    return f"{app.conf.id}-{group}-{msg.partition}"


class _Components(mode.Service):
    """Starts the worker's own Kafka clients with the app and stops them with it."""

    def __init__(self, *components: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(**kwargs)
        self._components = components

    async def on_start(self) -> None:
        for component in self._components:
            await component.start()

    async def on_stop(self) -> None:
        for component in reversed(self._components):
            await component.stop()


class DispositionRecorder:
    """Writes analysts' dispositions to ``violation-dispositions`` (idempotent, acks=all)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect (aiokafka clients must be made inside the running loop)."""
        self._producer = AIOKafkaProducer(
            **self._settings.kafka(enable_idempotence=True, acks="all")
        )
        await self._producer.start()

    async def record(self, disposition: Disposition) -> None:
        """Send one disposition and wait until the cluster has it."""
        if self._producer is None:
            raise RuntimeError("the disposition producer is not started")
        await self._producer.send_and_wait(
            self._settings.dispositions_topic,
            json_bytes(disposition),
            key=disposition.violation_id.encode(),
        )

    async def stop(self) -> None:
        """Flush and close."""
        if self._producer is not None:
            await self._producer.stop()


class MarketbanWorker:
    """The Faust app, its topics and tables, and the engine they drive."""

    def __init__(self, settings: Settings, calendar: MarketCalendar) -> None:
        s = settings
        self.settings = s
        self.app = faust.App(
            s.app_id,
            **faust_broker(s),
            store=s.store,
            datadir=str(s.data_dir),
            processing_guarantee="exactly_once",
            topic_partitions=s.topic_partitions,
            topic_replication_factor=s.topic_replication,
            broker_commit_interval=s.commit_interval,
            # Faust's default is 60 s: after a worker dies, its partitions get no decisions until
            # the group coordinator expires it. Heartbeats every 3 s keep 10 s safe.
            broker_session_timeout=s.session_timeout,
            consumer_auto_offset_reset="earliest",
            web_enabled=True,
            web_bind=s.web_bind,
            web_port=s.web_port,
            # Other workers pass account-keyed API requests to this URL (docs/architecture.md).
            web_host=s.web_advertised_host or s.web_bind,
            autodiscover=False,
        )
        parts = s.topic_partitions
        self._prefix_len = len(s.topic_prefix)
        self.account_inputs = self.app.topic(
            *(s.topic(n) for n in ACCOUNT_TOPICS), partitions=parts, **_RAW
        )
        self.bans_input = self.app.topic(s.topic("bans"), partitions=parts, **_RAW)

        def table(name: str) -> Any:  # noqa: ANN401 - faust is untyped
            # bytes key/value types are what make Faust store the values raw (its default is JSON).
            return self.app.Table(name, partitions=parts, key_type=bytes, value_type=bytes)

        # The last input offset applied per topic-partition, committed in the same transaction as
        # the outputs. faust-streaming 0.15.3 can hand a restarted worker records it already
        # processed and committed (seen in the SIGKILL test; upstream faust-streaming#517,
        # #216, #596): this guard makes applying a record idempotent whatever Faust redelivers.
        self.progress = table("progress")
        self.view = BanView()
        state = State(
            bans=ModelTable(table("bans"), BanRecord),
            persons=self.view,
            links=ModelTable(table("links"), AccountLink),
            accounts=ModelTable(table("accounts"), AccountState),
        )
        self._published: list[BanWindows] = []
        self.engine = Engine(calendar, state, publish=self._publish)
        self.view_consumer = TopicFollower(
            s.kafka(),
            [s.ban_windows_topic],
            lambda rec: self.view.apply(BanWindows.model_validate_json(rec.value)),
            probe=True,
        )
        self.violation_log = ViolationLog(s.violations_kept)
        self._observed = {
            s.topic("decisions"): self.violation_log.on_decision,
            s.topic("violations"): self.violation_log.on_violation,
        }
        self.observer = TopicFollower(
            s.kafka(), [*self._observed, s.dispositions_topic], self._observe
        )
        self.dispositions = DispositionRecorder(s)
        self.metrics = Metrics(self._sizes, self._lag)
        self._commit_barrier = asyncio.Lock()
        setattr(self.app, faust_fixes.COMMIT_BARRIER, self._commit_barrier)
        self.app.agent(self.account_inputs, name="account-events")(self._account_agent)
        self.app.agent(self.bans_input, name="ban-events")(self._ban_agent)
        self._add_health_views()
        Api(
            self.app,
            s,
            self.engine,
            self.violation_log,
            self.dispositions.record,
            self.readiness,
            self.metrics.exposition,
        ).install()

    def _observe(self, record: Any) -> None:  # noqa: ANN401 - an aiokafka ConsumerRecord
        count = self._observed.get(record.topic)
        if count is not None:
            count(record.value, record.timestamp)
        else:
            self.violation_log.on_disposition(record.value)

    def _sizes(self) -> dict[str, int]:
        sizes = {name: len(table) for name, table in self.app.tables.items()}
        sizes["ban_view_persons"] = len(self.view)
        sizes["ban_register"] = len(self.view.decisions())
        sizes["violations_kept"] = len(self.violation_log)
        return sizes

    def _lag(self) -> dict[tuple[str, int], int]:
        consumer: Any = self.app.consumer
        inputs = {self.settings.topic(n) for n in (*ACCOUNT_TOPICS, "bans")}
        # Faust keeps the last offset it read per partition only in this private map; a
        # partition not read since the last rebalance has none and is left out.
        read = consumer._read_offset  # noqa: SLF001
        lag: dict[tuple[str, int], int] = {}
        try:
            assigned = consumer.assignment()
        except ConsumerNotStarted:
            return lag
        for tp in assigned:
            highwater, last = consumer.highwater(tp), read.get(tp)
            if tp.topic in inputs and highwater is not None and last is not None:
                lag[tp.topic, tp.partition] = max(highwater - last - 1, 0)
        return lag

    def readiness(self) -> dict[str, bool]:
        """What must hold before this worker decides orders; ready when every value is true."""
        recovery: Any = self.app.tables.recovery  # type: ignore[attr-defined] # not on TableManagerT
        return {
            "partitions_assigned": not self.app.rebalancing,
            "tables_recovered": recovery.completed.is_set() and not recovery.in_recovery,
            "ban_view_loaded": self.view_consumer.ready.is_set(),
            "broker_reachable": self.view_consumer.broker_reachable,
        }

    def _add_health_views(self) -> None:
        # Faust calls a page function as fun(view, request); a bound method would lose the view.
        async def live(view: Any, _request: Any) -> Any:  # noqa: ANN401 - faust is untyped
            return view.json({"status": "live"})

        async def ready(view: Any, _request: Any) -> Any:  # noqa: ANN401 - faust is untyped
            checks = self.readiness()
            ok = all(checks.values())
            return view.json(
                {"status": "ready" if ok else "not ready", "checks": checks},
                status=200 if ok else 503,
            )

        self.app.page("/health/live")(live)
        self.app.page("/health/ready")(ready)

    def _publish(self, record: BanWindows) -> None:
        # Applied here at once (this worker decides with it immediately) and sent to every worker.
        self.view.apply(record)
        self._published.append(record)

    def _process(self, event: Any, now: datetime) -> list[Output]:  # noqa: ANN401 - faust is untyped
        msg = event.message
        topic = msg.topic[self._prefix_len :]
        key = msg.key.decode("utf-8", errors="replace") if msg.key is not None else None
        payload: bytes = msg.value if msg.value is not None else b""
        source = Source(topic=msg.topic, partition=msg.partition, offset=msg.offset)
        progress_key = f"{msg.topic}:{msg.partition}".encode()
        applied = self.progress.get(progress_key)
        if applied is not None and msg.offset <= int(applied):
            log.warning("skipped %s[%d]@%d: already applied", msg.topic, msg.partition, msg.offset)
            return []
        try:
            outputs = self.engine.handle(topic, key, payload, source, now)
        except Exception as exc:  # a bug must not stop enforcement: fail closed, keep going
            log.exception("internal error on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            error = f"internal error while processing this message: {exc!r}"
            outputs = self.engine.fail_closed(topic, key, payload, source, error)
        self.progress[progress_key] = str(msg.offset).encode()
        self.metrics.count(outputs, self._prefix_len)
        return outputs

    async def _send(self, event: Any, sends: list[tuple[str, bytes | None, bytes]]) -> None:  # noqa: ANN401
        producer = self.app.consumer.transactions.producer
        tid = source_transactional_id(self.app, event)
        for topic, key, value in sends:
            await producer.send(topic, key, value, None, None, None, transactional_id=tid)

    def _encode(self, outputs: list[Output]) -> list[tuple[str, bytes | None, bytes]]:
        return [
            (
                self.settings.topic(topic),
                key.encode() if key is not None else None,
                json_bytes(value),
            )
            for topic, key, value in outputs
        ]

    async def _batches(self, stream: StreamT[Any]) -> AsyncIterator[tuple[Any, datetime]]:
        """Each input event with its batch's processing time, in order.

        Batches cut Faust's per-event cost by 20-30 % (docs/benchmarks.md). Faust acks
        a batch after it was handled, so its offsets commit only after its outputs were sent.
        """
        # No order is decided from a partial ban view (Faust has already restored the tables).
        await self.view_consumer.ready.wait()
        s = self.settings
        taken: Any = stream  # take_events is missing from faust's StreamT stub
        async for events in taken.take_events(s.batch_max, within=s.batch_wait):
            # No commit while a batch is handled (faust_fixes, correction 4): a record's outputs
            # and its table writes always land in the same transaction.
            async with self._commit_barrier:
                now = datetime.now(UTC)  # wall-clock ok: stamps decided_at only, never decides
                for event in events:
                    # A table write goes to the changelog partition of the *current* event;
                    # take_events leaves that at the batch's last event, so it is set per record.
                    _current_event.set(weakref.ref(event))
                    yield event, now
                # Table changelog writes wait in Faust's producer buffer; Faust does not flush it
                # before a transactional commit. Flushing before the batch is acked keeps every
                # state write in the transaction that commits its input's offset.
                await self.app.producer.buffer.flush()
        _current_event.set(None)

    async def _account_agent(self, stream: StreamT[Any]) -> None:
        orders = self.settings.topic("orders")
        metrics = self.metrics
        async for event, now in self._batches(stream):
            await self._send(event, self._encode(self._process(event, now)))
            msg = event.message
            if msg.topic == orders and msg.timestamp is not None:
                # Faust gives the record's broker timestamp in seconds; a metric, not a decision.
                waited = time.time() - msg.timestamp  # wall-clock ok
                metrics.observe_latency(max(waited, 0.0))

    async def _ban_agent(self, stream: StreamT[Any]) -> None:
        async for event, now in self._batches(stream):
            outputs = self._encode(self._process(event, now))
            published, self._published = self._published, []
            windows = [
                (
                    self.settings.ban_windows_topic,
                    r.decision_id.encode(),
                    json_bytes(r),
                )
                for r in published
            ]
            await self._send(event, windows + outputs)

    def services(self) -> list[Any]:
        """Services the Faust Worker must start and stop with the app."""
        return [_Components(self.view_consumer, self.observer, self.dispositions)]


def faust_broker(settings: Settings) -> dict[str, Any]:
    """Faust's broker URL and credentials from the settings (SASL_SSL when configured)."""
    options: dict[str, Any] = {"broker": f"kafka://{settings.kafka_bootstrap}"}
    if settings.kafka_security_protocol == "SASL_SSL":
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_username,
            password=settings.kafka_password.get_secret_value(),
            ssl_context=settings.ssl_context(),
            mechanism=settings.kafka_sasl_mechanism,
        )
    return options


def run_worker(settings: Settings, calendar: MarketCalendar) -> int:
    """Create missing topics, check co-partitioning, then run the Faust worker until stopped."""
    from marketban.adapters.kafka_admin import topics_command  # noqa: PLC0415

    status = topics_command(settings)
    if status:
        return status
    faust_fixes.apply()
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker_app = MarketbanWorker(settings, calendar)
    worker = faust.Worker(
        worker_app.app,
        *worker_app.services(),
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        quiet=True,
    )
    worker.execute_from_commandline()
    return 0
