"""``marketban bench e2e``: the processor on the real broker, next to the transport's own limit.

One run (docs/benchmarks.md):

1. reference data of the synthetic market (10,000 banned persons by default) is produced and the
   worker catches up (lag 0);
2. ``passthrough``: the same order flow through a raw aiokafka exactly-once copy process
   (``marketban bench passthrough``), orders/s from the first produce to the last copy consumed;
3. ``throughput``: the order flow through the worker, orders/s from the first produce to the last
   decision consumed (read_committed); the backlog drains, so this is the sustained capacity;
4. ``R8's cost``: the flow without terminals (R8 has nothing to do), then with them again, then
   both once more (on, off, on, off, on): per lane without, 1 - the mean orders/s of the lanes
   with terminals either side of it ÷ its own; the figure is the median of every round's pairs;
5. ``latency``: open loop at a fixed rate, each order's latency from its scheduled produce time
   to its decision consumed (a late producer does not hide queueing).

Steps 2 to 5 repeat ``runs`` times with fresh order ids; the figures are medians, ratios pair the
passthrough and worker runs of the same round. A shorter warm-up round comes first and counts in
no figure: on a broker just started the first round ran at two thirds of the others' speed, and
unevenly across its lanes (the passthrough 22,678-23,888 orders/s against 34,269-38,894 in the
rounds after it), which skewed the ratios that compare lanes of the same round.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from marketban.adapters.kafka_admin import ensure_topics, wait_caught_up
from marketban.adapters.processes import Child, free_port, peak_rss_mb, wait_ready
from marketban.domain.models import INPUT_TOPICS
from marketban.service.synthetic import FLOW_TOPICS, generate, messages
from marketban.settings import KafkaOptions, Settings

Record = tuple[str, bytes, bytes]  # topic (spec name), key, value
_CLI = ["-m", "marketban.cli"]


@dataclass
class Market:
    """The synthetic market split into reference data and order-flow rounds."""

    reference: list[Record]
    banned_persons: int
    seed: int = 7

    def flow(self, round_id: str, orders: int) -> tuple[list[Record], list[bytes]]:
        """Order flow with order ids unique to ``round_id``; also the order ids in produce order."""
        records: list[Record] = []
        order_ids: list[bytes] = []
        lines = generate(
            orders,
            banned_persons=self.banned_persons,
            order_prefix=round_id,
            seed=self.seed,
            broken_every=10**12,  # readable orders only: each must get exactly one decision
        )
        for topic, key, payload in messages(lines):
            if topic not in FLOW_TOPICS:
                continue
            records.append((topic, key.encode(), payload))
            if topic == "orders":
                order_ids.append(orjson.loads(payload)["order_id"].encode())
        return records, order_ids


def without_terminals(flow: list[Record]) -> list[Record]:
    """The same flow with no order's terminal: R8 then has nothing to re-key (R8 "off")."""
    out: list[Record] = []
    for topic, key, value in flow:
        if topic != "orders":
            out.append((topic, key, value))
            continue
        order = orjson.loads(value)
        order.pop("terminal", None)
        out.append((topic, key, orjson.dumps(order)))
    return out


def synthetic_market(banned_persons: int) -> Market:
    """Reference data (bans, links, holdings, evidence) of the synthetic market."""
    reference = [
        (topic, key.encode(), payload)
        for topic, key, payload in messages(generate(0, banned_persons=banned_persons))
    ]
    return Market(reference, banned_persons)


class Collector:
    """Reads a topic read_committed from its end and notes when each awaited key arrives."""

    def __init__(self, kafka: KafkaOptions, topic: str, partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(
            **kafka,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._topic = topic
        self._partitions = partitions
        self._task: asyncio.Task[None] | None = None
        self.arrivals: dict[bytes, float] = {}
        self._want = 0
        self._done = asyncio.Event()
        self._by_order_id = False

    async def start(self) -> None:
        """Assign every partition at its current end."""
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    def expect(self, count: int, *, by_order_id: bool) -> None:
        """Reset and wait for ``count`` records (keyed by the value's order_id if asked)."""
        self.arrivals = {}
        self._want = count
        self._by_order_id = by_order_id
        self._done.clear()

    async def _run(self) -> None:
        n = 0
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.perf_counter()
            for records in batches.values():
                for rec in records:
                    if self._by_order_id:
                        key = orjson.loads(rec.value or b"{}").get("order_id", "").encode()
                    else:
                        n += 1
                        key = n.to_bytes(8, "big")
                    self.arrivals.setdefault(key, now)
            if len(self.arrivals) >= self._want > 0:
                self._done.set()

    async def wait(self, within_s: float) -> bool:
        """True once every expected record arrived; False after ``within_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), within_s)
        return self._done.is_set()

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def _produce_all(producer: AIOKafkaProducer, records: list[tuple[str, bytes, bytes]]) -> None:
    futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
    await asyncio.gather(*futures)


async def _saturated(
    producer: AIOKafkaProducer,
    collector: Collector,
    records: list[tuple[str, bytes, bytes]],
    *,
    orders: int,
    expected: int,
    within_s: float,
) -> float:
    """Produce everything at once; orders per second until ``expected`` outputs arrived."""
    collector.expect(expected, by_order_id=False)
    start = time.perf_counter()
    await _produce_all(producer, records)
    if not await collector.wait(within_s):
        got = len(collector.arrivals)
        raise TimeoutError(f"only {got} of {expected} outputs arrived within {within_s:.0f}s")
    return orders / (max(collector.arrivals.values()) - start)


async def _open_loop(
    producer: AIOKafkaProducer,
    collector: Collector,
    records: list[tuple[str, bytes, bytes]],
    order_ids: list[bytes],
    *,
    rate: float,
    within_s: float,
    all_orders: bool = False,
) -> dict[str, Any]:
    """Produce orders on a fixed schedule; latency from scheduled send to decision consumed.

    ``all_orders``: every record is an order (a passthrough lane's single input topic).
    """
    collector.expect(len(order_ids), by_order_id=True)
    scheduled: dict[bytes, float] = {}
    ids: Iterator[bytes] = iter(order_ids)
    start = time.perf_counter() + 0.05
    sent = 0
    for topic, key, value in records:
        if all_orders or topic.endswith("orders"):
            due = start + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled[next(ids)] = due
            sent += 1
        await producer.send(topic, value, key=key)
    await collector.wait(within_s)
    latencies = sorted(
        (collector.arrivals[oid] - due) * 1000
        for oid, due in scheduled.items()
        if oid in collector.arrivals
    )
    if not latencies:
        raise TimeoutError("no decision arrived in the latency run")

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {
        "rate": rate,
        "orders": sent,
        "missing": sent - len(latencies),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": round(latencies[-1], 2),
    }


@dataclass(frozen=True)
class Lane:
    """A process the order flow goes through, next to the worker, for comparison."""

    name: str  # also the `marketban bench` subcommand that runs it
    args: list[str]
    inputs: dict[str, str]  # spec input topic -> the topic this lane reads it from
    output: str
    per_order: bool  # one output per order (decisions) rather than one per input record
    extra: tuple[str, ...] = ()  # further topics it writes to


def _lanes(prefix: str) -> list[Lane]:
    lanes = []
    for name in ("passthrough", "passthrough-per-partition"):
        source, sink = f"{prefix}bench-{name}-in", f"{prefix}bench-{name}-out"
        args = ["bench", name, f"{prefix}bench-{name}", sink, source]
        lanes.append(Lane(name, args, dict.fromkeys(INPUT_TOPICS, source), sink, per_order=False))
    return lanes


@dataclass(frozen=True)
class E2EOptions:
    """What ``marketban bench e2e`` measures, and how long it may take."""

    orders: int = 100_000
    rate: float = 2_000
    latency_s: float = 15
    runs: int = 3
    #: Orders of the warm-up round's throughput lanes (its latency lanes: a third as long); 0: none.
    warmup_orders: int = 10_000
    banned_persons: int = 10_000
    start_worker: bool = True
    timeout_s: float = 600


def r8_cost(before: float, off: float, after: float) -> float:
    """R8's cost from a lane without terminals between two with them (orders/s each)."""
    return round(1 - (before + after) / 2 / off, 3)


async def bench_e2e(settings: Settings, opts: E2EOptions, log: Any) -> dict[str, Any]:  # noqa: ANN401
    """Run the whole e2e benchmark; return its figures."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}." if opts.start_worker else settings.topic_prefix
    s = settings.model_copy(update={"topic_prefix": prefix})
    workdir = Path(tempfile.mkdtemp(prefix="marketban-bench-"))
    env = {**os.environ, "MARKETBAN_TOPIC_PREFIX": prefix}
    env["MARKETBAN_KAFKA_BOOTSTRAP"] = s.kafka_bootstrap
    worker: Child | None = None
    # The transport's limits: one producer for throughput, one producer per partition (the
    # decider's shape) for latency.
    lanes = _lanes(prefix)
    lane_topics = {t for lane in lanes for t in (*lane.inputs.values(), lane.output, *lane.extra)}
    await ensure_topics(s.kafka(), sorted(lane_topics), s.topic_partitions, 1)
    children: list[Child] = []
    market = synthetic_market(opts.banned_persons)
    producer = AIOKafkaProducer(**s.kafka(), linger_ms=1, acks="all")
    await producer.start()
    n = s.topic_partitions
    decisions = Collector(s.kafka(), s.topic("decisions"), n)
    copies = {lane.name: Collector(s.kafka(), lane.output, n) for lane in lanes}
    result: dict[str, Any] = {"bench": "e2e", "orders_per_run": opts.orders, "runs": []}
    try:
        if opts.start_worker:
            port = free_port()
            worker_env = {
                **env,
                "MARKETBAN_DATA_DIR": str(workdir / "worker-data"),
                "MARKETBAN_WEB_PORT": str(port),
                "MARKETBAN_LOG_LEVEL": "WARNING",
            }
            worker = Child([*_CLI, "worker"], worker_env, workdir / "worker.log").start()
            children.append(worker)
            await asyncio.to_thread(wait_ready, worker, port, 120)
        for lane in lanes:
            children.append(Child(_CLI + lane.args, env, workdir / f"{lane.name}.log").start())
            await copies[lane.name].start()
        await decisions.start()
        started = time.perf_counter()
        await _produce_all(producer, [(s.topic(t), k, v) for t, k, v in market.reference])
        topics = [s.topic(t) for t in INPUT_TOPICS]
        await wait_caught_up(s.kafka(), s.app_id, topics, opts.timeout_s)
        loaded = time.perf_counter() - started
        result["reference_records"] = len(market.reference)
        result["reference_per_s"] = round(len(market.reference) / loaded)
        log.write(f"reference data: {len(market.reference)} records in {loaded:.1f} s\n")

        async def through_worker(records: list[Record], ids: list[bytes]) -> float:
            """Orders/s of one flow through the worker, then its lag back to 0."""
            per_s = await _saturated(
                producer,
                decisions,
                [(s.topic(t), k, v) for t, k, v in records],
                orders=len(ids),
                expected=len(ids),
                within_s=opts.timeout_s,
            )
            await wait_caught_up(s.kafka(), s.app_id, topics, opts.timeout_s)
            return per_s

        rounds = [(opts.warmup_orders, opts.latency_s / 3)] if opts.warmup_orders > 0 else []
        rounds += [(opts.orders, opts.latency_s)] * opts.runs
        warmups = len(rounds) - opts.runs
        for i, (orders, latency_s) in enumerate(rounds):
            n = i - warmups  # the warm-up is round -1
            flow, order_ids = market.flow(f"R{n}-", orders)
            base: dict[str, float] = {}
            for lane in lanes:
                lane_flow = [(lane.inputs[t], k, v) for t, k, v in flow]
                base[lane.name] = await _saturated(
                    producer,
                    copies[lane.name],
                    lane_flow,
                    orders=len(order_ids),
                    expected=len(order_ids) if lane.per_order else len(lane_flow),
                    within_s=opts.timeout_s,
                )
            pt = base.pop("passthrough")
            base.pop("passthrough-per-partition")
            wk = await through_worker(flow, order_ids)
            # The same worker and round with R8 off (orders without terminals cost R8 nothing)
            # and on in turn: on, off, on, off, on. Each off lane is compared with the on lanes
            # either side of it, so that the machine's drift over the round does not count as
            # R8's; two such pairs a round, since one pair's spread on this machine is as wide
            # as the target (0.15).
            r8_lanes = [wk]
            for k, lane_prefix in enumerate("XYWZ"):
                r8_flow, r8_ids = market.flow(f"{lane_prefix}{n}-", orders)
                if k % 2 == 0:
                    r8_flow = without_terminals(r8_flow)
                r8_lanes.append(await through_worker(r8_flow, r8_ids))
            _, wk_off, wk_again, wk_off2, wk_third = r8_lanes
            r8_costs = [r8_cost(*r8_lanes[k - 1 : k + 2]) for k in (1, 3)]
            lat_orders = int(opts.rate * latency_s)
            lat_flow, lat_ids = market.flow(f"L{n}-", lat_orders)
            lat = await _open_loop(
                producer,
                decisions,
                [(s.topic(t), k, v) for t, k, v in lat_flow],
                lat_ids,
                rate=opts.rate,
                within_s=opts.timeout_s,
            )
            floor_lane = lanes[1]
            floor_flow, floor_ids = market.flow(f"F{n}-", lat_orders)
            floor = await _open_loop(
                producer,
                copies[floor_lane.name],
                [(floor_lane.inputs[t], k, v) for t, k, v in floor_flow if t == "orders"],
                floor_ids,
                rate=opts.rate,
                within_s=opts.timeout_s,
                all_orders=True,
            )
            run = {
                "throughput_per_s": round(wk),
                "passthrough_per_s": round(pt),
                "ratio": round(wk / pt, 3),
                "r8_off_per_s": round(wk_off),
                "r8_on_again_per_s": round(wk_again),
                "r8_off_again_per_s": round(wk_off2),
                "r8_on_third_per_s": round(wk_third),
                "r8_costs": r8_costs,
                "r8_cost": round(statistics.mean(r8_costs), 3),
                **{k: lat[k] for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "missing")},
                "floor_p50_ms": floor["p50_ms"],
                "floor_p99_ms": floor["p99_ms"],
                "p50_ratio": round(lat["p50_ms"] / max(floor["p50_ms"], 0.001), 2),
                "p99_ratio": round(lat["p99_ms"] / max(floor["p99_ms"], 0.001), 2),
            }
            if n < 0:
                result.setdefault("warmup", []).append(run)
                log.write(f"warm-up round (in no figure): {orjson.dumps(run).decode()}\n")
                log.flush()
                continue
            result["runs"].append(run)
            log.write(f"run {n + 1}/{opts.runs}: {orjson.dumps(run).decode()}\n")
            log.flush()
        for figure in (
            "throughput_per_s",
            "passthrough_per_s",
            "ratio",
            "r8_off_per_s",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "floor_p50_ms",
            "floor_p99_ms",
            "p50_ratio",
            "p99_ratio",
        ):
            result[figure] = statistics.median(r[figure] for r in result["runs"])
        # R8's cost: the median of every on/off pair of the rounds, not of the rounds' means.
        result["r8_cost"] = statistics.median(c for r in result["runs"] for c in r["r8_costs"])
        result["latency_rate_per_s"] = opts.rate
        result["worker_peak_rss_mb"] = (
            peak_rss_mb(worker.proc.pid) if worker is not None and worker.proc else None
        )
    finally:
        # Children first: a failing client must never leave a worker running.
        for child in children:
            child.stop()
        for client in (decisions, *copies.values(), producer):
            with contextlib.suppress(Exception):
                await client.stop()
        if opts.start_worker:
            shutil.rmtree(workdir / "worker-data", ignore_errors=True)
    result["logs"] = str(workdir)
    return result
