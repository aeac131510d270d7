"""The stream processor on the real broker: parity with replay, recovery, poison (issue 4)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from marketban.adapters.kafka_admin import ensure_topics
from marketban.adapters.processes import Child, is_ready, wait_ready
from tests.integration.stream import (
    cli,
    decision_counts,
    outcome,
    replay,
    start_worker,
    through_worker,
    wait_caught_up,
    wait_split,
    worker_env,
)

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def test_stream_gives_the_same_decisions_and_violations_as_replay(
    kafka_env: dict[str, str], tmp_path: Path
) -> None:
    streamed, log = through_worker(kafka_env, SCENARIOS / "rules.jsonl", tmp_path)
    want_decisions, want_violations = outcome(replay(SCENARIOS / "rules.jsonl"))
    got_decisions, got_violations = outcome(streamed)
    assert got_decisions == want_decisions, log[-5000:]
    assert got_violations == want_violations
    assert len(want_decisions) == 64
    # R8's two hops through the internal topics came back: the suspicions, each once.
    suspicions = [v for v in got_violations if v.startswith("suspected_proxy_trading:")]
    assert sorted(suspicions) == [
        "suspected_proxy_trading:NX1:PX:2024-05-14",
        "suspected_proxy_trading:NX1:PX:2024-06-24",
    ]
    assert all(len(got_violations[v]) == 1 for v in suspicions)
    assert "Traceback" not in log


def test_two_workers_give_the_same_decisions_and_violations_as_replay(
    kafka_env: dict[str, str], tmp_path: Path
) -> None:
    first = start_worker(worker_env(kafka_env, tmp_path / "data1"), tmp_path / "one.log")
    env = worker_env(kafka_env, tmp_path / "data2")
    second = start_worker(env, tmp_path / "two.log")
    try:
        wait_split(first.env, env)  # both in the group: the tasks are split between them
        cli(env, "feed", str(SCENARIOS / "rules.jsonl"))
        streamed = cli(env, "tail", "--idle", "3")
    finally:
        first.stop()
        second.stop()
    want_decisions, want_violations = outcome(replay(SCENARIOS / "rules.jsonl"))
    got_decisions, got_violations = outcome(streamed)
    assert got_decisions == want_decisions
    assert got_violations == want_violations
    assert "suspected_proxy_trading:NX1:PX:2024-05-14" in got_violations
    logs = first.log() + second.log()
    assert "Traceback" not in logs
    # the work was shared: each worker opened tasks of its own
    assert "open" in first.log()
    assert "open" in second.log()


def _split_market(path: Path) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """Reference data, a first stretch, an orders-only burst, and the rest of a synthetic market."""
    lines = path.read_bytes().splitlines(keepends=True)
    first_order = next(i for i, line in enumerate(lines) if b'"topic":"orders"' in line)
    reference, flow = lines[:first_order], lines[first_order:]
    third = len(flow) // 3
    burst = [line for line in flow[third : 2 * third] if b'"topic":"orders"' in line]
    return reference, flow[:third], burst, flow[2 * third :]


def test_a_worker_killed_mid_stream_is_replaced_without_loss_or_duplicates(
    kafka_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    market = tmp_path / "market.jsonl"
    market.write_bytes(
        cli(kafka_env, "synth", "--orders", "1200", "--banned-persons", "15", "--seed", "11")
    )
    reference, first, burst, rest = _split_market(market)
    # What the stream receives, in this order; replay on it is the oracle.
    (tmp_path / "all.jsonl").write_bytes(b"".join(reference + first + burst + rest))
    for name, part in {"ref": reference + first, "burst": burst, "rest": rest}.items():
        (tmp_path / f"{name}.jsonl").write_bytes(b"".join(part))

    env = worker_env(kafka_env, tmp_path / "data1")
    worker = start_worker(env, tmp_path / "worker1.log")
    try:
        cli(env, "feed", str(tmp_path / "ref.jsonl"))
        cli(env, "feed", "--no-wait", str(tmp_path / "burst.jsonl"))
        time.sleep(0.5)  # the worker is mid-burst: some transactions open, some committed
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
    finally:
        worker.stop()

    # A fresh data directory: the new worker can only recover its tables from the changelogs.
    env2 = worker_env(kafka_env, tmp_path / "data2")
    worker2 = start_worker(env2, tmp_path / "worker2.log")
    try:
        asyncio.run(wait_caught_up(kafka_bootstrap, topic_prefix))
        # The first record waits for the takeover: the group expires the killed member first.
        cli(env2, "feed", "--timeout", "120", str(tmp_path / "rest.jsonl"))
        asyncio.run(wait_caught_up(kafka_bootstrap, topic_prefix))
        streamed = cli(env2, "tail", "--idle", "3")
        (tmp_path / "streamed.jsonl").write_bytes(streamed)
    finally:
        worker2.stop()

    got_decisions, got_violations = outcome(streamed)
    want_decisions, want_violations = outcome(replay(tmp_path / "all.jsonl"))
    assert len(got_decisions) == 1200
    assert all(len(d) == 1 for d in got_decisions.values()), "an order was decided twice"
    assert all(len(v) == 1 for v in got_violations.values()), "a violation was emitted twice"
    assert got_decisions == want_decisions, worker2.log()[-5000:]
    assert got_violations == want_violations
    # The dashboard's counts went through the kill too: counts the killed worker had committed
    # but not yet sent were sent by its successor, once; the successor sent its own as it stopped.
    by_verdict = Counter(f"verdict:{d[0]['verdict']}" for d in got_decisions.values())
    assert asyncio.run(decision_counts(kafka_bootstrap, topic_prefix)) == dict(by_verdict)


POISON = [
    b"\xff\xfe\x00 not utf-8",
    b"",
    b"[]",
    b'{"order_id": 1}',
    b'{"account_id": "X", "person_id": null}',
    b'{"deep": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"huge": "' + b"x" * 200_000 + b'"}',
    b'{"a": 1, "a": 2}',
    b'{"quantity": 1e999}',
    b'{"entered_at": "2024-05-13T10:00:00"}',
]


async def _produce_poison(bootstrap: str, prefix: str, valid_orders: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=1_048_576)
    await producer.start()
    rng = random.Random(3)
    bad = 0
    try:
        for i in range(valid_orders):
            for topic in ("bans", "accounts", "orders", "evidence", "holdings", "executions"):
                await producer.send(f"{prefix}{topic}", rng.choice(POISON), key=b"A1")
                bad += 1
            account = f"A{i % 7}"
            await producer.send(f"{prefix}orders", _order(f"V{i}", account), key=account.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return bad


def _order(order_id: str, account: str) -> bytes:
    """A valid order of ``account`` on a trading day."""
    return json.dumps(
        {
            "order_id": order_id,
            "account_id": account,
            "exchange": "XSHG",
            "security": "600000",
            "side": "buy",
            "quantity": 100,
            "price": "1.00",
            "entered_at": "2024-05-13T10:00:00+08:00",
            "broker": "B1",
        }
    ).encode()


async def _produce_orders(bootstrap: str, prefix: str, order_ids: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i, order_id in enumerate(order_ids):
            account = f"A{i % 7}"
            await producer.send(f"{prefix}orders", _order(order_id, account), key=account.encode())
        await producer.flush()
    finally:
        await producer.stop()


def _json_line(line: bytes) -> Any:
    """One line ``marketban tail`` printed; a line that is not JSON fails naming itself."""
    try:
        return json.loads(line)
    except ValueError as exc:
        shown = line if len(line) < 2000 else line[:1000] + b" ... " + line[-500:]
        raise AssertionError(f"tail printed a line that is not JSON ({exc}): {shown!r}") from exc


async def _move_group(bootstrap: str, prefix: str) -> tuple[int, int]:
    """Commit, for the worker group, offset 0 on every account input it has an offset of but
    ``orders``, and the end of each ``orders`` partition; how many partitions of each."""

    group = f"{prefix}worker"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        (described,) = await admin.describe_topics([f"{prefix}orders"])
    finally:
        await admin.close()
    others = {f"{prefix}{t}" for t in ("accounts", "bans", "executions")}
    back = [tp for tp, mark in found.items() if tp.topic in others and mark.offset > 0]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = sorted(p["partition"] for p in described["partitions"])
        orders = [TopicPartition(f"{prefix}orders", p) for p in parts]
        ends = await consumer.end_offsets(orders)
        consumer.assign(back + orders)
        await consumer.commit({**dict.fromkeys(back, 0), **ends})
    finally:
        await consumer.stop()
    return len(back), len(orders)


def test_a_restarted_worker_goes_on_from_its_stores_offsets_unless_the_group_was_moved_past_them(
    kafka_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_env, tmp_path / "data")
    worker = start_worker(env, tmp_path / "one.log")
    try:
        cli(env, "feed", str(SCENARIOS / "rules.jsonl"))
        asyncio.run(wait_caught_up(kafka_bootstrap, topic_prefix))
    finally:
        worker.stop()
    skipped = [f"SKIPPED{i}" for i in range(14)]
    asyncio.run(_produce_orders(kafka_bootstrap, topic_prefix, skipped))
    # The group's offsets are only a copy. Put them back to the start, as a worker that died
    # before reporting could leave them, on every input but orders; and past the orders that
    # arrived while the worker was stopped, as an operator skipping a backlog does.
    back, ahead = asyncio.run(_move_group(kafka_bootstrap, topic_prefix))
    assert back >= 3
    assert ahead >= 1
    again = start_worker(env, tmp_path / "two.log")
    try:
        # The restarted tasks tell the group where they go on from, with no new record.
        asyncio.run(wait_caught_up(kafka_bootstrap, topic_prefix, within_s=60))
        streamed = cli(env, "tail", "--idle", "3")
    finally:
        again.stop()
    decisions, violations = outcome(streamed)
    want_decisions, want_violations = outcome(replay(SCENARIOS / "rules.jsonl"))
    assert all(len(d) == 1 for d in decisions.values()), "an order was decided again"
    assert not set(skipped) & set(decisions), "an order the group was moved past was decided"
    assert decisions == want_decisions
    assert violations == want_violations
    assert "ahead of the" in again.log()
    assert "Traceback" not in again.log()


class _OlderAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc] # aiokafka is untyped
    """The task assignor of the version whose tasks kept their input offsets in the group."""

    name = "marketban-tasks"


class _Joined(ConsumerRebalanceListener):  # type: ignore[misc] # aiokafka is untyped
    def __init__(self, joined: threading.Event) -> None:
        self.joined = joined

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:  # noqa: ARG002
        self.joined.set()


async def _older_member(
    bootstrap: str, group: str, topic: str, joined: threading.Event, leave: threading.Event
) -> None:
    """A member of ``group`` as a worker of the older version joins it, until ``leave``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        partition_assignment_strategy=(_OlderAssignor,),
    )
    await consumer.start()
    try:
        consumer.subscribe([topic], listener=_Joined(joined))
        while not leave.is_set():
            await consumer.getmany(timeout_ms=200)
    finally:
        await consumer.stop()  # leaves the group


def test_a_worker_joins_its_group_only_once_the_older_versions_workers_have_left(
    kafka_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_env, tmp_path / "data")
    port = int(env["MARKETBAN_WEB_PORT"])
    joined, leave = threading.Event(), threading.Event()
    member = threading.Thread(
        target=lambda: asyncio.run(
            _older_member(
                kafka_bootstrap, f"{topic_prefix}worker", f"{topic_prefix}orders", joined, leave
            )
        )
    )
    member.start()
    worker: Child | None = None
    try:
        assert joined.wait(60), "the older version's member did not join its group"
        worker = Child(["-m", "marketban.cli", "worker"], env, tmp_path / "worker.log").start()
        deadline = time.monotonic() + 60
        while "another marketban version" not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "another marketban version" in worker.log()
        # It shares no task with the older member: it is not ready, it did not take a task.
        assert not is_ready(port)
        assert "tasks [" not in worker.log()
        leave.set()
        member.join(30)
        wait_ready(worker, port, 90)
        cli(env, "feed", str(SCENARIOS / "rules.jsonl"))
        streamed = cli(env, "tail", "--idle", "3")
    finally:
        leave.set()
        member.join(30)
        if worker is not None:
            worker.stop()
    assert outcome(streamed) == outcome(replay(SCENARIOS / "rules.jsonl"))
    assert "Traceback" not in worker.log()


def test_poison_messages_are_rejected_and_every_valid_order_is_still_decided(
    kafka_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_env, tmp_path / "data")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        cli(env, "feed", str(SCENARIOS / "rules.jsonl"))  # the worker is up and has state
        bad = asyncio.run(_produce_poison(kafka_bootstrap, topic_prefix, 60))
        asyncio.run(wait_caught_up(kafka_bootstrap, topic_prefix))
        streamed = cli(env, "tail", "--idle", "3")
        assert worker.proc.poll() is None, "the worker stopped"
    finally:
        worker.stop()
    records = [_json_line(line) for line in streamed.splitlines()]
    decided = {r["value"]["order_id"] for r in records if r["topic"] == "decisions"}
    assert {f"V{i}" for i in range(60)} <= decided
    rejected = [r["value"] for r in records if r["topic"] == "rejected"]
    poison_rejections = [
        r
        for r in rejected
        if r["key"] == "A1"
        and r["offset"] is not None
        and r["error"]
        and "duplicate" not in r["error"]
    ]
    assert len(poison_rejections) >= bad
    assert all(r["source_topic"].startswith(topic_prefix) for r in poison_rejections)
    huge = [r for r in poison_rejections if "the limit is" in r["error"]]
    assert huge
    assert all(r["payload_truncated"] for r in huge)


def test_feed_fails_clearly_when_no_worker_applies_its_records(kafka_env: dict[str, str]) -> None:
    line = json.dumps(
        {
            "topic": "accounts",
            "key": "A1",
            "value": {"account_id": "A1", "person_id": "P1", "kind": "cash"},
        }
    )
    cli(kafka_env, "topics")
    proc = subprocess.run(
        [sys.executable, "-m", "marketban.cli", "feed", "--timeout", "2", "-"],
        env=kafka_env,
        input=line.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert b"did not apply" in proc.stderr
    assert b"marketban worker" in proc.stderr


def test_topics_refuses_a_layout_that_breaks_co_partitioning(
    kafka_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    asyncio.run(
        ensure_topics(
            {"bootstrap_servers": kafka_bootstrap},
            [f"{topic_prefix}orders"],
            partitions=2,
            replication=1,
        )
    )
    env = {**kafka_env, "MARKETBAN_TOPIC_PARTITIONS": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "marketban.cli", "topics"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{topic_prefix}orders".encode() in proc.stderr
    assert b"co-partitioning" in proc.stderr
