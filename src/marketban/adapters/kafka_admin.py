"""Small Kafka administration helpers on aiokafka: metadata checks and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from marketban.domain.models import INPUT_TOPICS, OUTPUT_TOPICS
from marketban.settings import Settings


async def wait_for_cluster(bootstrap: str, wait_s: float) -> list[int]:
    """Return the broker ids once a metadata request succeeds; raise TimeoutError after wait_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    last: BaseException | None = None
    while loop.time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return [int(b["node_id"]) for b in cluster["brokers"]]
        except (KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.25)
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {wait_s:.0f}s: {last!r}")


async def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, replication: int
) -> None:
    """Create the named topics if missing, all with ``partitions`` partitions (no configs)."""
    await prepare_topics(bootstrap, {n: {} for n in names}, partitions, replication)


async def wait_caught_up(
    bootstrap: str, group: str, topics: Iterable[str], within_s: float
) -> None:
    """Wait until ``group`` has committed everything on ``topics``; TimeoutError after within_s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        names = list(topics)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topics may be brand new
        tps = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()]
        while True:
            ends = await consumer.end_offsets(tps)
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except KafkaError:
                committed = {}  # no coordinator or no group yet: nothing committed
            done = {tp: committed[tp].offset if tp in committed else 0 for tp in ends}
            behind = {
                f"{tp.topic}[{tp.partition}]": end - done[tp]
                for tp, end in ends.items()
                if end > done[tp]
            }
            if not behind:
                return
            if loop.time() > deadline:
                raise TimeoutError(
                    f"group {group} did not catch up within {within_s:.0f}s: {behind}"
                )
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()
        await admin.close()


class TopicLayoutError(RuntimeError):
    """Existing topics whose partition counts would break co-partitioning."""


async def prepare_topics(
    bootstrap: str, plan: dict[str, dict[str, str]], partitions: int, replication: int
) -> None:
    """Create the planned topics that are missing; refuse a layout that breaks co-partitioning.

    Every input is keyed by account (or decision) and joined in one partition, so every planned
    topic must have ``partitions`` partitions.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, replication, topic_configs=configs)
            for name, configs in plan.items()
            if name not in existing
        ]
        if missing:
            # Another worker may win the race; the layout check below still applies.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        counts = await _partition_counts(admin, list(plan))
        wrong = {topic: count for topic, count in counts.items() if count != partitions}
        if wrong:
            raise TopicLayoutError(
                f"topics {wrong} do not have MARKETBAN_TOPIC_PARTITIONS={partitions} partitions; "
                "all marketban topics must have the same count (co-partitioning by account)"
            )
    finally:
        await admin.close()


async def _partition_counts(
    admin: AIOKafkaAdminClient, topics: list[str], wait_s: float = 30
) -> dict[str, int]:
    """Partition count per topic, once the metadata of every (freshly created) topic is known.

    Right after CreateTopics the broker can still describe a new topic with no partitions (seen
    under load: the worker then refused a correct layout and exited).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        described = await admin.describe_topics(topics)
        counts = {t["topic"]: len(t["partitions"]) for t in described}
        unknown = [t["topic"] for t in described if t["error_code"] or not t["partitions"]]
        if not unknown or loop.time() > deadline:
            return counts
        await asyncio.sleep(0.1)


def topic_plan(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the worker needs, with its configs (ban-windows is compacted)."""
    plan: dict[str, dict[str, str]] = {settings.topic(n): {} for n in INPUT_TOPICS + OUTPUT_TOPICS}
    plan[settings.ban_windows_topic] = {"cleanup.policy": "compact"}
    return plan


def topics_command(settings: Settings) -> int:
    """Create the missing topics and check the layout; 2 when partition counts are wrong."""
    try:
        asyncio.run(
            prepare_topics(
                settings.kafka_bootstrap,
                topic_plan(settings),
                settings.topic_partitions,
                settings.topic_replication,
            )
        )
    except TopicLayoutError as exc:
        print(f"marketban: {exc}", file=sys.stderr)  # noqa: T201 - the command's own answer
        return 2
    print(f"topics ready: {', '.join(sorted(topic_plan(settings)))}", file=sys.stderr)  # noqa: T201
    return 0


def ping_command(timeout: float) -> int:
    """CLI entry of ``marketban ping``."""
    settings = Settings()
    try:
        brokers = asyncio.run(wait_for_cluster(settings.kafka_bootstrap, timeout))
    except TimeoutError as exc:
        print(f"marketban ping: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"ok: {settings.kafka_bootstrap} brokers={brokers}")  # noqa: T201
    return 0
