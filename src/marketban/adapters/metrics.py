"""The worker's Prometheus metrics (``/metrics``), in a registry of its own.

Labels are closed vocabularies only — verdict, clause, violation kind, topic, partition, table —
never an account, person, order or name (docs/operations.md: what is never logged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from marketban.domain.engine import Output
from marketban.domain.fastpath import DecisionRecord
from marketban.domain.models import Decision, Rejected, Violation

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Decision latency buckets, in seconds: a gateway cares about 1-50 ms; overload reaches minutes.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


#: Records not yet read, by (topic, partition).
Lag = Mapping[tuple[str, int], int]


class _AtScrape(Collector):
    """Gauges computed when Prometheus scrapes: table and view sizes, consumer lag."""

    def __init__(self, sizes: Callable[[], Mapping[str, int]], lag: Callable[[], Lag]) -> None:
        self._sizes = sizes
        self._lag = lag

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe(), registering calls collect(), before the worker has a consumer.
        yield GaugeMetricFamily("marketban_table_entries", "", labels=["table"])
        yield GaugeMetricFamily("marketban_consumer_lag", "", labels=["topic", "partition"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sizes = GaugeMetricFamily(
            "marketban_table_entries",
            "Entries in the worker's tables (local partitions) and broadcast views",
            labels=["table"],
        )
        for name, size in sorted(self._sizes().items()):
            sizes.add_metric([name], size)
        yield sizes
        lag = GaugeMetricFamily(
            "marketban_consumer_lag",
            "Input records not yet read, per assigned partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(self._lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag


class Metrics:
    """Counters and gauges of one worker, updated from the outputs it sends."""

    def __init__(self, sizes: Callable[[], Mapping[str, int]], lag: Callable[[], Lag]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "marketban_decisions", "Orders decided, by verdict and Art. 6 clause",
            ["verdict", "clause"], registry=r,
        )  # fmt: skip
        self.violations = Counter(
            "marketban_violations", "Violations emitted, by kind", ["kind"], registry=r
        )
        self.rejected = Counter(
            "marketban_rejected", "Input records rejected, by source topic", ["topic"], registry=r
        )
        self.latency = Histogram(
            "marketban_decision_latency_seconds",
            "From the order's broker timestamp to its decision being sent (before the commit)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_AtScrape(sizes, lag))

    def count(self, outputs: Iterable[Output], prefix_len: int) -> None:
        """Count what one input caused (decisions, violations, rejections)."""
        for topic, _key, value in outputs:
            if isinstance(value, DecisionRecord | Decision):
                self.decisions.labels(value.verdict, value.clause or "").inc()
            elif isinstance(value, Violation):
                self.violations.labels(value.kind).inc()
            elif isinstance(value, Rejected) and topic == "rejected":
                self.rejected.labels(value.source_topic[prefix_len:]).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
