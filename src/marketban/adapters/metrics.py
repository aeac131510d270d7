"""The worker's Prometheus metrics (``/metrics``), in a registry of its own.

Labels are closed vocabularies only — verdict, clause, violation kind, topic, partition, table —
never an account, person, order or name (docs/operations.md: what is never logged).

Counting sits on the order path, so it is plain integer arithmetic in one thread (the worker's
event loop); the Prometheus families are built from those numbers when ``/metrics`` is scraped.
prometheus-client's own Counter and Histogram take a lock per update: 1.6 us per order together,
about half of what the engine needs to decide one; this way 0.9 us (timeit, the same busy machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from marketban.decider.partitioning import MISPLACED
from marketban.domain.engine import Output

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Decision latency buckets, in seconds: a gateway cares about 1-50 ms; overload reaches minutes.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip

#: Event loop lag buckets, in seconds: a turn of a few ms delays every hop of a transaction.
LOOP_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0)
#: How often the loop's lag is sampled.
LOOP_LAG_EVERY_S = 0.1

#: Records not yet read, by (topic, partition).
Lag = Mapping[tuple[str, int], int]


class DeciderHealth(Protocol):
    """What the metrics read of the decider when scraped (``marketban.decider.Decider``)."""

    @property
    def hanging(self) -> Mapping[int, int]:
        """Task -> the first offset of a transaction hanging in its changelog partition."""

    @property
    def layout_errors(self) -> Mapping[str, int]:
        """Topic read -> its partition count, where that is not the configured one."""

    def fetch_failing_for(self) -> float:
        """For how long every fetch has failed, in seconds (0 if the last one worked)."""


class _NoDecider:
    """The health reported until ``Metrics.watch``: nothing hangs, fails or is misplaced."""

    hanging: Mapping[int, int] = MappingProxyType({})
    layout_errors: Mapping[str, int] = MappingProxyType({})

    def fetch_failing_for(self) -> float:
        """Nothing has been fetched yet, so nothing has failed."""
        return 0.0


_COUNTERS = {
    "d": ("marketban_decisions", "Orders decided, by verdict and clause", ["verdict", "clause"]),
    "v": ("marketban_violations", "Violations emitted, by kind", ["kind"]),
    "r": ("marketban_rejected", "Input records rejected, by source topic", ["topic"]),
    "m": (
        "marketban_misplaced",
        "Input records in another partition than murmur2(key) mod N (rejected; orders blocked)",
        ["topic"],
    ),
}


class Metrics(Collector):
    """One worker's counts, latency histogram, lag and table sizes, as a Prometheus collector."""

    def __init__(
        self,
        sizes: Callable[[], Mapping[str, int]],
        lag: Callable[[], Lag],
    ) -> None:
        self._sizes = sizes
        self._lag = lag
        self._decider: DeciderHealth = _NoDecider()
        self._counts: dict[tuple[str, ...], int] = {}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._latency_sum = 0.0
        self._lag_buckets = [0] * (len(LOOP_LAG_BUCKETS) + 1)
        self._lag_sum = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def watch(self, decider: DeciderHealth) -> None:
        """Report ``decider``'s health too (it is made after the metrics it counts into)."""
        self._decider = decider

    def count(self, outputs: Iterable[Output], source: str) -> None:
        """Count what one input of ``source`` (spec topic name) caused."""
        counts = self._counts
        for topic, _key, value in outputs:
            if topic == "decisions":
                key: tuple[str, ...] = ("d", value.verdict, value.clause or "")  # type: ignore[union-attr]
            elif topic == "violations":
                key = ("v", value.kind)  # type: ignore[union-attr]
            elif topic == "rejected":
                key = ("r", source)
                if value.error.startswith(MISPLACED):  # type: ignore[union-attr]
                    misplaced = ("m", source)
                    counts[misplaced] = counts.get(misplaced, 0) + 1
            else:
                continue
            counts[key] = counts.get(key, 0) + 1

    def observe_latency(self, seconds: float) -> None:
        """One order's time from its broker timestamp to its decision being sent."""
        self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def observe_loop_lag(self, seconds: float) -> None:
        """How late one of the event loop's timers fired."""
        self._lag_buckets[bisect_left(LOOP_LAG_BUCKETS, seconds)] += 1
        self._lag_sum += seconds

    def describe(self) -> Iterator[Any]:
        """Nothing: the families are only known when collected (and registering must not call)."""
        return iter(())

    def collect(self) -> Iterator[Any]:
        """The metric families, built from the current numbers."""
        families = {
            kind: CounterMetricFamily(name, text, labels=labels)
            for kind, (name, text, labels) in _COUNTERS.items()
        }
        for key, n in sorted(self._counts.items()):
            families[key[0]].add_metric(list(key[1:]), n)
        yield from families.values()
        yield HistogramMetricFamily(
            "marketban_decision_latency_seconds",
            "From the order's broker timestamp to its decision being sent (before the commit)",
            buckets=_cumulative(LATENCY_BUCKETS, self._buckets),
            sum_value=self._latency_sum,
        )
        yield HistogramMetricFamily(
            "marketban_event_loop_lag_seconds",
            "How late a timer of the worker's event loop fires (sampled every 100 ms): what each "
            "step of a decision and each Kafka request waits before it runs",
            buckets=_cumulative(LOOP_LAG_BUCKETS, self._lag_buckets),
            sum_value=self._lag_sum,
        )
        lag = GaugeMetricFamily(
            "marketban_consumer_lag",
            "Input records not yet read, per assigned partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(self._lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        sizes = GaugeMetricFamily(
            "marketban_table_entries",
            "Entries in the worker's tables (local partitions) and broadcast views",
            labels=["table"],
        )
        for name, size in sorted(self._sizes().items()):
            sizes.add_metric([name], size)
        yield sizes
        hanging = GaugeMetricFamily(
            "marketban_hanging_transaction_offset",
            "Offset where a transaction hangs undecided in a task's changelog (operations.md)",
            labels=["task"],
        )
        decider = self._decider
        for task, offset in sorted(decider.hanging.items()):
            hanging.add_metric([str(task)], offset)
        yield hanging
        yield GaugeMetricFamily(
            "marketban_fetch_failing_seconds",
            "For how long every fetch of the decider has failed (0: the last one worked)",
            value=decider.fetch_failing_for(),
        )
        layout = GaugeMetricFamily(
            "marketban_topic_partitions_unexpected",
            "Partition count of a topic the worker reads, where it is not "
            "MARKETBAN_TOPIC_PARTITIONS (partitions added while it ran; operations.md)",
            labels=["topic"],
        )
        for topic, count in sorted(decider.layout_errors.items()):
            layout.add_metric([topic], count)
        yield layout

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, int]]:
    """Prometheus histogram buckets (cumulative, ``+Inf`` last) from per-bucket counts."""
    cumulative, buckets = 0, []
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += n
        buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
    return buckets


class LoopLagProbe:
    """Samples how late the event loop runs a timer, into ``Metrics.observe_loop_lag``.

    Everything in the worker (the tasks' handling, every Kafka request and response) is a turn
    of one event loop; when the turns are long, every hop of an order's transaction waits
    (docs/benchmarks.md). Decision latency says that orders are slow, this says whether the
    worker's loop is why.
    """

    def __init__(self, observe: Callable[[float], None], every_s: float = LOOP_LAG_EVERY_S) -> None:
        self._observe = observe
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.create_task(self._sample(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        every, observe = self._every_s, self._observe
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(every)
            observe(max(time.perf_counter() - asked - every, 0.0))
