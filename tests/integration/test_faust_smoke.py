"""Faust on the real broker: a Table survives a worker restart through its changelog topic."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from marketban.adapters.kafka_admin import ensure_topics
from marketban.adapters.processes import Child, free_port

APP = str(Path(__file__).parent / "apps" / "table_app.py")
KEYS = [f"acct-{i}" for i in range(6)]


async def _produce(bootstrap: str, topic: str, records: list[tuple[str, str]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key.encode(), value=value.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _totals(bootstrap: str, prefix: str, expected: dict[str, int]) -> dict[str, int]:
    """Ask the worker for every key's total until the answers equal expected or 60 s pass."""
    consumer = AIOKafkaConsumer(
        f"{prefix}answers",
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: dict[str, int] = {}
    try:
        await consumer.seek_to_end()
        for _ in range(60):
            query_id = uuid.uuid4().hex
            await _produce(bootstrap, f"{prefix}queries", [(k, query_id) for k in KEYS])
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    _qid, total = r.value.decode().split(":")
                    seen[r.key.decode()] = int(total)
            if seen == expected:
                break
    finally:
        await consumer.stop()
    return seen


async def _lag(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(2)]
        ends = await consumer.end_offsets(parts)
        committed = [await consumer.committed(tp) or 0 for tp in parts]
    finally:
        await consumer.stop()
    return sum(ends.values()) - sum(committed)


async def test_table_is_recovered_from_changelog_by_a_new_worker(
    kafka_bootstrap: str, topic_prefix: str, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    names = [f"{topic_prefix}{t}" for t in ("adds", "queries", "answers")]
    await ensure_topics({"bootstrap_servers": kafka_bootstrap}, names, partitions=2, replication=1)
    args = [APP, "worker", "-l", "info", "--web-port", str(free_port())]
    env = {**kafka_env, "MARKETBAN_DATA_DIR": str(tmp_path / "app-data")}

    first = Child(args, env, tmp_path / "worker1.log").start()
    try:
        adds = [(k, str(n)) for n in range(1, 11) for k in KEYS]
        await _produce(kafka_bootstrap, f"{topic_prefix}adds", adds)
        expected = dict.fromkeys(KEYS, 55)
        assert await _totals(kafka_bootstrap, topic_prefix, expected) == expected, first.log()
    finally:
        first.stop()

    # Every add is committed, so the next worker will not re-read them: only the changelog can
    # give it the totals (the store is memory://, nothing survives on disk).
    assert await _lag(kafka_bootstrap, f"{topic_prefix}smoke-app", f"{topic_prefix}adds") == 0

    second = Child(args, env, tmp_path / "worker2.log").start()
    try:
        expected = dict.fromkeys(KEYS, 55)
        assert await _totals(kafka_bootstrap, topic_prefix, expected) == expected, second.log()
        await _produce(kafka_bootstrap, f"{topic_prefix}adds", [(k, "100") for k in KEYS])
        expected = dict.fromkeys(KEYS, 155)
        assert await _totals(kafka_bootstrap, topic_prefix, expected) == expected, second.log()
        assert "changelog" in second.log()
    finally:
        second.stop()
