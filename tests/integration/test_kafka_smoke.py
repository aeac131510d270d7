"""The broker really works with aiokafka: keyed produce, group consume, commit, resume."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from marketban.adapters.kafka_admin import ensure_topics

N = 1000


async def _consume(bootstrap: str, topic: str, group: str, want: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        while len(got) < want:
            batch = await consumer.getmany(timeout_ms=10_000)
            if not batch:
                break
            for records in batch.values():
                got.extend((r.key, r.value) for r in records if r.key and r.value)
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def test_consumer_group_resumes_after_committed_offset(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}smoke"
    await ensure_topics(
        {"bootstrap_servers": kafka_bootstrap}, [topic], partitions=3, replication=1
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(N):
            producer_key = f"k{i % 37}".encode()
            await producer.send(topic, key=producer_key, value=f"first-{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    first = await _consume(kafka_bootstrap, topic, f"{topic_prefix}g", N)
    assert len(first) == N
    assert {v for _, v in first} == {f"first-{i}".encode() for i in range(N)}
    # Same key, same partition: per-key order is preserved.
    by_key: dict[bytes, list[int]] = {}
    for k, v in first:
        by_key.setdefault(k, []).append(int(v.decode().split("-")[1]))
    assert all(seq == sorted(seq) for seq in by_key.values())

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send(topic, key=b"late", value=f"second-{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    # A restarted consumer in the same group sees only what came after its commit.
    second = await _consume(kafka_bootstrap, topic, f"{topic_prefix}g", 10)
    assert sorted(v for _, v in second) == sorted(f"second-{i}".encode() for i in range(10))

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{topic_prefix}g")
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(topic, p)) for p in range(3)]
    finally:
        await consumer.stop()
    assert sum(c or 0 for c in committed) == N + 10
