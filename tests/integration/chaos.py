"""A steady market for the fault suite, produced so that replay can say what the outcome must be.

The processor reads each topic on its own, so records produced close together on different topics
can be consumed in either order. A real market has a causal order the driver keeps here, and
that makes the outcome unique, which is what lets ``marketban audit`` compare it with replay:

- an execution is produced only after its order's decision was read (the market acts after the
  gateway) and once no other order of its account waits for a decision (a cancel must not
  overtake an order produced before it: replay would see them the other way round), and the next
  order of that account only once the execution was applied;
- a reference change in mid-flow (a ban revoked, evidence filed) waits until every order before
  it is decided, and the flow waits until the change is applied and has reached every worker's
  ban view (``SETTLE_S``).

The topics stamp LogAppendTime, so that causal order is also the order the decider and the
audit merge the topics in (spec R6).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from marketban.adapters.kafka_admin import wait_caught_up
from marketban.adapters.processes import Child
from marketban.domain.models import INPUT_TOPICS
from marketban.service.synthetic import FLOW_TOPICS, generate, messages
from tests.integration.stream import start_worker

SETTLE_S = 1.0  # a ban change reaches the other workers' views through the ban-windows topic

Message = tuple[str, str, bytes]


def market(orders: int, seed: int, banned_persons: int = 40) -> tuple[list[Message], list[Message]]:
    """Reference data and order flow (orders and executions) of a synthetic market.

    One order in five comes from a banned person's account, so that quotas, tracked orders and
    executions (the state the faults put at risk) are exercised all the time.
    """
    reference: list[Message] = []
    flow: list[Message] = []
    lines = generate(
        orders,
        banned_persons=banned_persons,
        other_accounts=5000,
        banned_share=0.2,
        seed=seed,
        order_prefix=f"C{seed}-",
        broken_every=97,
    )
    for item in messages(lines):
        (flow if item[0] in FLOW_TOPICS else reference).append(item)
    return reference, flow


def change(n: int, banned_persons: int) -> list[Message]:
    """The n-th reference change made in mid-flow: a ban revoked, or evidence filed."""
    person = (n * 7) % banned_persons
    if n % 2 == 0:
        did = f"CSRC-SYN-{person:05d}"
        value = {"decision_id": did, "version": 2, "action": "revoke"}
        return [("bans", did, orjson.dumps(value))]
    account = f"SB{person:05d}0"
    evidence = {
        "evidence_id": f"EV-MID-{n}",
        "clause": "6.3",
        "account_id": account,
        "security": None,
        "side": "sell",
        "max_quantity": 500,
        "valid_from": "2024-05-01",
        "valid_until": "2025-12-31",
        "issued_by": "People's Court",
        "disclosed_on": None,
        "revoked": False,
    }
    return [("evidence", account, orjson.dumps(evidence))]


class Market:
    """Produces a market to a deployment's input topics, keeping its causal order."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.group = f"{prefix}worker"
        self.produced_orders: set[str] = set()
        self.decided: set[str] = set()
        self.undecided: dict[str, set[str]] = {}  # account -> its orders awaiting a decision
        self.held: dict[str, Message] = {}  # execution by order id, until its order is decided
        self.unapplied: dict[str, tuple[TopicPartition, int]] = {}  # account -> its execution
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        await self._producer.start()
        await self._admin.start()
        self._tasks = [
            asyncio.create_task(self._watch_decisions()),
            asyncio.create_task(self._watch_applied()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._producer.stop()
        await self._admin.close()

    async def _produce(self, topic: str, key: str | None, value: bytes) -> Any:
        """Queue one record; the future of its metadata."""
        raw_key = key.encode() if key is not None else None
        return await self._producer.send(f"{self.prefix}{topic}", value, key=raw_key)

    async def send(self, topic: str, key: str | None, value: bytes) -> tuple[TopicPartition, int]:
        """Produce one record and wait for it; its partition and offset."""
        meta = await (await self._produce(topic, key, value))
        return TopicPartition(meta.topic, meta.partition), meta.offset

    async def burst(self, orders: Iterable[Message]) -> None:
        """Orders as fast as the producer takes them (acks awaited at the end): overload."""
        pending = []
        for topic, key, value in orders:
            self._note_order(value)
            pending.append(await self._produce(topic, key, value))
        await asyncio.gather(*pending)

    async def reference(self, records: Iterable[Message], within_s: float = 180) -> None:
        """Reference data: once everything before it is decided; returns once it is applied."""
        await self.drain(within_s)
        for topic, key, value in records:
            await self.send(topic, key, value)
        await self.caught_up(within_s)
        await asyncio.sleep(SETTLE_S)

    async def flow(
        self,
        records: Iterable[Message],
        rate: float,
        changes: int = 0,
        banned_persons: int = 40,
        within_s: float = 180,
    ) -> None:
        """Orders at ``rate`` a second (executions after their decisions), with mid-flow changes."""
        items = list(records)
        orders = sum(1 for t, _, _ in items if t == "orders")
        every = orders // (changes + 1) if changes else 0
        start, sent, base = time.monotonic(), 0, 0
        for topic, key, value in items:
            if topic == "executions":
                self.held[orjson.loads(value)["order_id"]] = (topic, key, value)
                continue
            deadline = time.monotonic() + within_s
            while key in self.unapplied:  # its account's last execution is not applied yet
                await self._release()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"execution of {key} not applied within {within_s}s")
                await asyncio.sleep(0.02)
            self._note_order(value)  # before the send: its decision can arrive before send returns
            await self.send(topic, key, value)
            sent += 1
            if every and sent % every == 0 and sent // every <= changes:
                await self.reference(change(sent // every, banned_persons), within_s)
                start, base = time.monotonic(), sent  # the schedule restarts after the pause
            await self._release()
            ahead = (sent - base) / rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)

    def _note_order(self, value: bytes) -> None:
        try:
            order = orjson.loads(value)
            order_id, account = order.get("order_id"), order.get("account_id")
        except (orjson.JSONDecodeError, AttributeError):
            return
        # The engine decides (blocks) an invalid order too, when it names both.
        if isinstance(order_id, str) and order_id and isinstance(account, str) and account:
            self.produced_orders.add(order_id)
            if order_id not in self.decided:
                self.undecided.setdefault(account, set()).add(order_id)

    async def _release(self) -> None:
        ready = [
            o
            for o, (_, account, _) in self.held.items()
            if o in self.decided and not self.undecided.get(account)
        ]
        for order_id in ready:
            topic, key, value = self.held.pop(order_id)
            self.unapplied[key] = await self.send(topic, key, value)

    async def drain(self, within_s: float) -> None:
        """Wait until every order is decided and every execution produced and applied."""
        deadline = time.monotonic() + within_s
        while self.produced_orders - self.decided or self.held or self.unapplied:
            await self._release()
            if time.monotonic() > deadline:
                missing = sorted(self.produced_orders - self.decided)[:5]
                raise TimeoutError(
                    f"not drained within {within_s}s: undecided {missing}, "
                    f"{len(self.held)} executions held, {len(self.unapplied)} not applied"
                )
            await asyncio.sleep(0.05)
        await self.caught_up(within_s)

    async def caught_up(self, within_s: float) -> None:
        """Wait until the worker group committed every input record."""
        topics = [f"{self.prefix}{t}" for t in INPUT_TOPICS]
        await wait_caught_up({"bootstrap_servers": self.bootstrap}, self.group, topics, within_s)

    async def _watch_decisions(self) -> None:
        consumer = AIOKafkaConsumer(
            f"{self.prefix}decisions",
            bootstrap_servers=self.bootstrap,
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for r in records:
                        decision: dict[str, Any] = orjson.loads(r.value or b"{}")
                        order_id = str(decision.get("order_id"))
                        self.decided.add(order_id)
                        self.undecided.get(str(decision.get("account_id")), set()).discard(order_id)
        finally:
            await consumer.stop()

    async def _watch_applied(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            if not self.unapplied:
                continue
            tps = list({tp for tp, _ in self.unapplied.values()})
            try:
                committed = await self._admin.list_consumer_group_offsets(
                    self.group, partitions=tps
                )
            except KafkaError:
                continue  # the group is rebalancing or its coordinator moving: ask again
            for account, (tp, offset) in list(self.unapplied.items()):
                meta = committed.get(tp)
                if meta is not None and meta.offset > offset:
                    del self.unapplied[account]


class Supervised:
    """A worker restarted (same settings, same data directory) whenever it exits on its own.

    Kubernetes restarts a worker that exits; so does this, for the fault suite. faust-streaming
    can stop a worker whose transactional producer was fenced during a rebalance
    (docs/operations.md); that costs a restart, and the audit shows whether it cost more.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.env, self.log_dir, self.name = env, log_dir, name
        self.restarts = 0
        self.child: Child | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> Self:
        """Start the worker, wait until it is ready, then keep it running."""
        self.child = start_worker(self.env, self.log_dir / f"{self.name}.log")
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            if self.child is not None and self.child.exited() and not self._stopping.is_set():
                self.restarts += 1
                log = self.log_dir / f"{self.name}.restart{self.restarts}.log"
                self.child = start_worker(self.env, log, ready_within_s=300)

    def kill(self) -> None:
        """SIGKILL, and no restart: the fault is that this worker is gone."""
        self._stopping.set()
        assert self.child is not None
        assert self.child.proc is not None
        self.child.proc.send_signal(signal.SIGKILL)
        self.child.proc.wait()

    def stop(self) -> int | None:
        """Stop supervising and stop the worker gracefully; its exit status."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.child.stop() if self.child is not None else None

    def logs(self) -> str:
        """Every log this worker has written, restarts included."""
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}*.log"))
        )
