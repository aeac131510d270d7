"""A task opening settles a transaction left open in its changelog (marketban.decider.forgotten).

The case it exists for (the coordinator recorded a commit whose markers were never written) only
arises when a broker stops at the wrong moment: ``make chaos`` restarts it under a worker. Here
the parts are tried on the real broker: the commit each producer makes (a tombstone in the
changelog), a changelog with nothing open, and one held open by a
producer that is not the task's, which the task's commits cannot end.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from marketban.adapters.kafka_admin import ensure_topics
from marketban.decider import forgotten
from marketban.decider.forgotten import ForgottenTransactionError, settle_forgotten
from marketban.decider.restore import Ends


async def _changelog(bootstrap: str, prefix: str) -> TopicPartition:
    """A changelog partition, on a fresh topic."""
    changelog = TopicPartition(f"{prefix}changelog", 1)
    kafka = {"bootstrap_servers": bootstrap}
    await ensure_topics(kafka, [changelog.topic], partitions=3, replication=1)
    return changelog


async def _producers(bootstrap: str, prefix: str, names: list[str]) -> list[AIOKafkaProducer]:
    producers = [
        AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{prefix}{name}")
        for name in names
    ]
    for producer in producers:
        await producer.start()
    return producers


async def test_a_changelog_with_nothing_open_is_left_as_it_is(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    ends = Ends({"bootstrap_servers": kafka_bootstrap})
    changelog = await _changelog(kafka_bootstrap, topic_prefix)
    producers = await _producers(kafka_bootstrap, topic_prefix, ["task-1", "task-1-1"])
    try:
        before = await ends.stable_and_end(changelog)
        assert not await settle_forgotten(ends, producers, changelog, taken=0)
        assert await ends.stable_and_end(changelog) == before
    finally:
        for producer in producers:
            await producer.stop()
        await ends.stop()


async def test_an_open_transaction_is_settled_only_if_the_store_took_it(
    kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forgotten, "_SETTLED_WITHIN_S", 1.0)  # the stranger keeps it open
    ends = Ends({"bootstrap_servers": kafka_bootstrap})
    changelog = await _changelog(kafka_bootstrap, topic_prefix)
    (stranger,) = await _producers(kafka_bootstrap, topic_prefix, ["stranger"])
    producers = await _producers(kafka_bootstrap, topic_prefix, ["task-1", "task-1-1"])
    try:
        await stranger.begin_transaction()
        await stranger.send_and_wait(changelog.topic, b"v", b"k", partition=1)
        stable, end = await ends.stable_and_end(changelog)
        assert stable < end  # open: the stranger has not ended it
        # A store that did not take those records: the outcome is unknown, nothing is written.
        assert not await settle_forgotten(ends, producers, changelog, taken=stable)
        assert await ends.stable_and_end(changelog) == (stable, end)
        # One that did (the worker saw it commit): each producer commits; it stays open.
        with pytest.raises(ForgottenTransactionError, match="still has a transaction open"):
            await settle_forgotten(ends, producers, changelog, taken=end)
        # Each task producer committed one transaction there: a tombstone each, a marker each.
        assert (await ends.stable_and_end(changelog))[1] == end + 2 * 2
        await stranger.abort_transaction()
        stable, end = await ends.once_settled(changelog, 10)
        assert stable == end
    finally:
        for producer in (stranger, *producers):
            await producer.stop()
        await ends.stop()


async def test_producers_wait_for_every_partition_they_touch_to_have_a_leader(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    from marketban.decider.forgotten import LeaderlessError, wait_for_leaders  # noqa: PLC0415

    changelog = await _changelog(kafka_bootstrap, topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await wait_for_leaders(admin, [changelog.topic, "__consumer_offsets"])
        with pytest.raises(LeaderlessError, match="without a leader"):
            await wait_for_leaders(admin, [changelog.topic, f"{topic_prefix}none"], within_s=0.5)
    finally:
        await admin.close()
