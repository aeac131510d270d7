"""The worker: a Faust application (lifecycle, web server) that hosts the decider as a service.

The decider (``marketban.decider``) decides every input on aiokafka; Faust runs the process, the
web server (API, dashboard, metrics, health) and the read models: the ban register follows the
``ban-windows`` topic the decider writes, the violations view follows the output topics.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer
from faust.app.base import BootStrategy

from marketban.adapters import eventloop
from marketban.adapters.api import Api
from marketban.adapters.follower import TopicFollower
from marketban.adapters.logs import logging_config
from marketban.adapters.metrics import LoopLagProbe, Metrics
from marketban.decider.loop import Decider
from marketban.domain.bans import BanView, BanWindows
from marketban.domain.calendars import MarketCalendar
from marketban.domain.fastpath import json_bytes
from marketban.domain.models import AccountLink
from marketban.service import heap
from marketban.service.monitor import Disposition, ViolationLog
from marketban.settings import Settings

log = logging.getLogger(__name__)


class _WebOnly(BootStrategy):
    """Faust as the application runtime only: web server and services, no Kafka clients."""

    enable_kafka = False
    enable_web = True


class _App(faust.App):
    BootStrategy = _WebOnly


class _Components(mode.Service):
    """Starts the worker's own parts with the app and stops them with it, in reverse."""

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
    """Writes analysts' records: dispositions, and the ``accounts`` links they confirm."""

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

    async def record_link(self, link: AccountLink) -> None:
        """Send an analyst's ``accounts`` record (R8's controlled link) and wait for the cluster."""
        if self._producer is None:
            raise RuntimeError("the disposition producer is not started")
        await self._producer.send_and_wait(
            self._settings.topic("accounts"), json_bytes(link), key=link.account_id.encode()
        )

    async def stop(self) -> None:
        """Flush and close."""
        if self._producer is not None:
            await self._producer.stop()


class MarketbanWorker:
    """The Faust app and the parts it hosts: decider, read models, API."""

    def __init__(self, settings: Settings, calendar: MarketCalendar) -> None:
        s = settings
        self.settings = s
        self.app = _App(
            f"{s.topic_prefix}app",
            datadir=str(s.data_dir),
            web_enabled=True,
            web_bind=s.web_bind,
            web_port=s.web_port,
            web_host=s.web_advertised_host or s.web_bind,
            autodiscover=False,
        )
        self.register = BanView()
        self.register_follower = TopicFollower(
            s.kafka(),
            [s.ban_windows_topic],
            s.topic_partitions,
            lambda rec: self.register.apply(BanWindows.model_validate_json(rec.value)),
            probe=True,
        )
        self.violation_log = ViolationLog(s.violations_kept)
        self._observed = {
            s.decision_counts_topic: self.violation_log.on_counts,
            s.topic("violations"): self.violation_log.on_violation,
        }
        self.observer = TopicFollower(
            s.kafka(), [*self._observed, s.dispositions_topic], s.topic_partitions, self._observe
        )
        self.dispositions = DispositionRecorder(s)
        self.metrics = Metrics(self._sizes, self._lag)
        self.decider = Decider(s, calendar, self.metrics)
        self.metrics.watch(self.decider)
        self._add_health_views()
        Api(
            self.app,
            s,
            self.decider,
            self.register,
            calendar,
            self.violation_log,
            self.dispositions.record,
            self.dispositions.record_link,
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
        sizes = self.decider.sizes()
        sizes["ban_register"] = len(self.register.decisions())
        sizes["violations_kept"] = len(self.violation_log)
        return sizes

    def _lag(self) -> dict[tuple[str, int], int]:
        return self.decider.lag()

    def readiness(self) -> dict[str, bool]:
        """What must hold before this worker decides orders; ready when every value is true."""
        checks = self.decider.readiness()
        checks["ban_view_loaded"] = self.register_follower.ready.is_set()
        checks["broker_reachable"] = self.register_follower.broker_reachable
        return checks

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

    def services(self) -> list[Any]:
        """Services the Faust Worker must start and stop with the app."""
        return [
            _Components(
                LoopLagProbe(self.metrics.observe_loop_lag),
                self.register_follower,
                self.observer,
                self.dispositions,
                self.decider,
            )
        ]


def run_worker(settings: Settings, calendar: MarketCalendar) -> int:
    """Create missing topics, check co-partitioning, then run the worker until stopped."""
    from marketban.adapters.kafka_admin import topics_command  # noqa: PLC0415

    status = topics_command(settings)
    if status:
        return status
    asyncio.set_event_loop(eventloop.new_loop())
    worker_app = MarketbanWorker(settings, calendar)
    heap.tune_collector()
    worker = faust.Worker(
        worker_app.app,
        *worker_app.services(),
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        quiet=True,
    )
    # Faust's terminal spinner, at a log level of WARNING or above, sets the root logger to DEBUG
    # so that every record turns it: every aiokafka debug call then built a LogRecord on the
    # order path (3.5 % of the worker's time in a profile). A worker's output is a log, not a TTY.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
