"""The decider's own faults (issue 12), judged by ``marketban audit`` on the real broker.

- a worker frozen (SIGSTOP) past the session timeout while two decide, then thawed: its late
  transaction is fenced (its log says so), nothing is lost or decided twice;
- two workers and input produced without any ordering across topics (``feed --no-wait``): the
  audit, which merges the topics as the tasks do, finds nothing differing;
- orders produced by librdkafka with its default partitioner (not murmur2): each one outside its
  key's partition is rejected with the partition it belongs in and blocked; none is allowed.

- partitions added to ``orders`` while a worker runs: it says it is not ready (and why) within
  seconds, and no order of a banned account is allowed, wherever the new count puts it.

``make test`` runs them at a small size; ``make chaos`` at MARKETBAN_CHAOS_SCALE times it.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from confluent_kafka import Producer

from marketban.decider.partitioning import partition_of
from tests.integration.api import eventually, http
from tests.integration.chaos import Market, Supervised, market
from tests.integration.stream import (
    banned_accounts,
    buy_order,
    cli,
    start_worker,
    wait_split,
    worker_env,
)
from tests.integration.test_chaos import ORDERS, SCALE, _env, assert_clean, assert_logs_clean, audit


def test_a_frozen_worker_is_fenced_when_it_thaws_and_nothing_is_lost_or_repeated(
    kafka_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    reference, flow = market(ORDERS, seed=31)
    half = len(flow) // 2
    burst = [r for r in market(20_000 * SCALE, seed=32)[1] if r[0] == "orders"]
    first = Supervised(_env(kafka_env, tmp_path / "data1"), tmp_path, "frozen").start()
    second = Supervised(_env(kafka_env, tmp_path / "data2"), tmp_path, "other").start()

    async def scenario() -> None:
        async with Market(kafka_bootstrap, topic_prefix) as m:
            await m.reference(reference)
            await m.flow(flow[:half], rate=150, changes=1)
            assert first.child is not None
            assert first.child.proc is not None
            # Frozen while a burst is still being produced: its tasks have a backlog and
            # transactions under way; the session timeout (6 s) passes, the tasks move to the
            # other worker, whose producers fence this one's transactional ids; thawed, it
            # still holds queued records and tries to commit them.
            bursting = asyncio.create_task(m.burst(burst))
            await asyncio.sleep(0.5)
            first.child.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(12)
            first.child.proc.send_signal(signal.SIGCONT)
            await bursting
            await m.drain(within_s=240)
            await m.flow(flow[half:], rate=150)
            await m.drain(within_s=240)

    try:
        asyncio.run(scenario())
    finally:
        first.stop()
        second.stop()
    frozen = first.logs()
    assert "fenced by a newer owner" in frozen, frozen[-5000:]
    assert_logs_clean(frozen)
    assert_clean(audit(kafka_env), ORDERS + len(burst))


def test_two_workers_and_input_fed_without_waiting_match_the_audit(
    kafka_env: dict[str, str], tmp_path: Path
) -> None:
    lines = cli(kafka_env, "synth", "--orders", str(400 * SCALE), "--banned-persons", "20")
    (tmp_path / "market.jsonl").write_bytes(lines)
    first = start_worker(_env(kafka_env, tmp_path / "data1"), tmp_path / "one.log")
    second = start_worker(_env(kafka_env, tmp_path / "data2"), tmp_path / "two.log")
    try:
        wait_split(first.env, second.env)  # both in the group: the tasks split between them
        cli(kafka_env, "feed", "--no-wait", str(tmp_path / "market.jsonl"))
        report = audit(kafka_env)
    finally:
        first.stop()
        second.stop()
    assert_logs_clean(first.log() + second.log())
    assert_clean(report, 400 * SCALE)


def test_orders_from_librdkafkas_default_partitioner_are_rejected_and_blocked_never_allowed(
    kafka_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    reference, accounts = banned_accounts(kafka_env, tmp_path, 30 * SCALE)
    env = worker_env(kafka_env, tmp_path / "data")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        cli(env, "feed", str(reference))
        # librdkafka's default partitioner is consistent_random (CRC32), not Java's murmur2.
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        placed = _send_orders(producer, env["MARKETBAN_TOPIC_PREFIX"] + "orders", accounts, "RD-")
        report = audit(env)
        streamed = cli(env, "tail", "--idle", "3")
    finally:
        worker.stop()
    decisions, rejected = {}, []
    for line in streamed.splitlines():
        rec = json.loads(line)
        if rec["topic"] == "decisions" and rec["value"]["order_id"].startswith("RD-"):
            decisions[rec["value"]["order_id"]] = rec["value"]
        elif rec["topic"] == "rejected" and "belongs in partition" in rec["value"]["error"]:
            rejected.append(rec["value"])
    assert len(decisions) == len(accounts)
    assert {d["verdict"] for d in decisions.values()} == {"block"}, "a banned account traded"
    partitions = int(env["MARKETBAN_TOPIC_PARTITIONS"])
    misplaced = [a for a, p in placed.items() if p != partition_of(a.encode(), partitions)]
    assert misplaced, "no order landed outside its key's partition: the test proves nothing"
    assert len(rejected) == len(misplaced)
    for r in rejected:
        assert "partitioner=murmur2_random" in r["error"]
    assert_clean(report, len(accounts))


def _send_orders(producer: Producer, topic: str, accounts: list[str], ids: str) -> dict[str, int]:
    """A buy order for each account (order id ``ids`` + its index): account -> its partition."""
    placed: dict[str, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        placed[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    for i, account in enumerate(accounts):
        order = buy_order(f"{ids}{i}", account)
        producer.produce(
            topic, key=account.encode(), value=orjson.dumps(order), on_delivery=delivered
        )
    assert producer.flush(30) == 0
    return placed


async def _add_partitions(bootstrap: str, topic: str, total: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        await admin.close()


def test_partitions_added_to_orders_while_it_runs_make_it_unready_and_allow_no_banned_order(
    kafka_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    reference, accounts = banned_accounts(kafka_env, tmp_path, 30)
    env = worker_env(kafka_env, tmp_path / "data")
    partitions = int(env["MARKETBAN_TOPIC_PARTITIONS"])
    port = int(env["MARKETBAN_WEB_PORT"])
    topic = env["MARKETBAN_TOPIC_PREFIX"] + "orders"
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        cli(env, "feed", str(reference))
        asyncio.run(_add_partitions(kafka_bootstrap, topic, partitions + 1))
        eventually(
            lambda: not http(port, "/health/ready")[1]["checks"].get("topic_layout", True),
            within_s=60,
            what="/health/ready saying topic_layout: false after the change",
        )
        # A gateway that starts now places by the new count, as Kafka's partitioner does.
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
        placed = _send_orders(producer, topic, accounts, "AP-")
        streamed = cli(env, "tail", "--idle", "3")
        status, metrics = http(port, "/metrics")
        assert status == 200, metrics
    finally:
        worker.stop()
    verdicts = {}
    for line in streamed.splitlines():
        rec = json.loads(line)
        if rec["topic"] == "decisions" and rec["value"]["order_id"].startswith("AP-"):
            verdicts[accounts[int(rec["value"]["order_id"][3:])]] = rec["value"]["verdict"]
    assert set(verdicts.values()) <= {"block"}, "a banned account traded"
    added = {a for a, p in placed.items() if p == partitions}
    assert added, "no order landed in the added partition: the test proves nothing"
    assert not added & verdicts.keys(), "an order in a partition no task reads was decided"
    assert verdicts.keys() == placed.keys() - added
    assert f'marketban_topic_partitions_unexpected{{topic="{topic}"}} {partitions + 1}.0' in metrics
    assert f"no longer have MARKETBAN_TOPIC_PARTITIONS={partitions} partitions" in worker.log()
    assert_logs_clean(worker.log())
