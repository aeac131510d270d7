"""Small Kafka administration helpers on aiokafka: metadata checks and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
from collections.abc import Iterable
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, TopicAlreadyExistsError

from marketban.adapters import eventloop
from marketban.domain.models import INPUT_TOPICS, OUTPUT_TOPICS
from marketban.settings import KafkaOptions, Settings


async def wait_for_cluster(kafka: KafkaOptions, wait_s: float) -> list[int]:
    """Return the broker ids once a metadata request succeeds; raise TimeoutError after wait_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    last: BaseException | None = None
    while loop.time() < deadline:
        admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return [int(b["node_id"]) for b in cluster["brokers"]]
        except (KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.25)
        finally:
            await admin.close()
    raise TimeoutError(
        f"Kafka at {kafka['bootstrap_servers']} did not answer within {wait_s:.0f}s: {last!r}"
    )


async def ensure_topics(
    kafka: KafkaOptions, names: Iterable[str], partitions: int, replication: int
) -> None:
    """Create the named topics if missing, all with ``partitions`` partitions (no configs)."""
    await prepare_topics(kafka, {n: {} for n in names}, partitions, replication)


async def wait_caught_up(
    kafka: KafkaOptions, group: str, topics: Iterable[str], within_s: float
) -> None:
    """Wait until ``group`` has committed everything on ``topics``; TimeoutError after within_s."""
    consumer = AIOKafkaConsumer(**kafka, isolation_level="read_committed")
    admin = AIOKafkaAdminClient(**kafka)
    await consumer.start()
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        counts = await partition_counts(admin, list(topics))
        tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
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


class KafkaAccessError(RuntimeError):
    """The cluster refused the credentials, or its certificate did not verify."""


async def check_access(settings: Settings) -> None:
    """Raise KafkaAccessError at once on wrong credentials or an unverifiable certificate.

    aiokafka clients log an authentication failure and keep retrying until their timeout; one
    connection of our own turns it into an immediate, clear error. Unreachable brokers are left to
    the commands' own retries. Only SASL_SSL has anything to check.
    """
    if settings.kafka_security_protocol != "SASL_SSL":
        return
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    options = settings.kafka()
    try:
        conn = await create_conn(
            host,
            int(port),
            security_protocol=options["security_protocol"],
            ssl_context=options["ssl_context"],
            sasl_mechanism=options["sasl_mechanism"],
            sasl_plain_username=options["sasl_plain_username"],
            sasl_plain_password=options["sasl_plain_password"],
            request_timeout_ms=10_000,
        )
    except SaslAuthenticationFailed as exc:
        raise KafkaAccessError(
            f"Kafka at {host}:{port} refused user {settings.kafka_username!r} "
            f"({settings.kafka_sasl_mechanism}): {exc}; check MARKETBAN_KAFKA_USERNAME and "
            "MARKETBAN_KAFKA_PASSWORD"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        trusted = settings.kafka_ca_file or "the system's CAs"
        raise KafkaAccessError(
            f"the TLS certificate of Kafka at {host}:{port} does not verify against {trusted}: "
            f"{exc.verify_message}; check MARKETBAN_KAFKA_CA_FILE"
        ) from None
    except (KafkaError, OSError):
        return
    conn.close()


def access_status(settings: Settings) -> int | None:
    """None when access is fine (or cannot be judged yet); else prints why and returns 2."""
    try:
        eventloop.run(check_access(settings))
    except KafkaAccessError as exc:
        print(f"marketban: {exc}", file=sys.stderr)  # noqa: T201 - the command's own answer
        return 2
    return None


class TopicLayoutError(RuntimeError):
    """Existing topics whose partition counts would break co-partitioning."""


async def prepare_topics(
    kafka: KafkaOptions, plan: dict[str, dict[str, str]], partitions: int, replication: int
) -> None:
    """Create the planned topics that are missing; refuse a layout that breaks co-partitioning.

    Every input is keyed by account (or decision) and joined in one partition, so every planned
    topic must have ``partitions`` partitions.
    """
    admin = AIOKafkaAdminClient(**kafka)
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
        counts = await partition_counts(admin, list(plan))
        wrong = {topic: count for topic, count in counts.items() if count != partitions}
        if wrong:
            raise TopicLayoutError(
                f"topics {wrong} do not have MARKETBAN_TOPIC_PARTITIONS={partitions} partitions; "
                "all marketban topics must have the same count (co-partitioning by account)"
            )
    finally:
        await admin.close()


async def partition_counts(
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
            return {t: n for t, n in counts.items() if n}
        await asyncio.sleep(0.1)


#: Inputs are stamped by the broker: the decider's order (spec R6) is the order of arrival.
_ARRIVAL_TIME: Final = {"message.timestamp.type": "LogAppendTime"}


def topic_plan(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the worker needs, with its configs."""
    plan: dict[str, dict[str, str]] = {settings.topic(n): dict(_ARRIVAL_TIME) for n in INPUT_TOPICS}
    plan.update({settings.topic(n): {} for n in OUTPUT_TOPICS})
    # Ban decisions are legal records every task rebuilds its ban book from: never expired.
    plan[settings.topic("bans")]["retention.ms"] = "-1"
    plan[settings.ban_windows_topic] = {"cleanup.policy": "compact"}
    plan[settings.changelog_topic] = {"cleanup.policy": "compact"}
    plan[settings.ticks_topic] = {"retention.ms": "60000", "segment.ms": "60000"}
    # The dashboard keeps a day of counts per minute of broker time (service.monitor.Tally).
    plan[settings.decision_counts_topic] = {**_ARRIVAL_TIME, "retention.ms": str(2 * 86_400_000)}
    # R8's re-keying (by terminal, and back by account): read within seconds by the tasks; a
    # week covers any outage that leaves the group's committed offsets meaningful.
    for internal in settings.routed_topics.values():
        plan[internal] = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    # Analysts' dispositions are the audit trail of Art. 14 follow-up: kept, never expired.
    plan[settings.dispositions_topic] = {"retention.ms": "-1"}
    return plan


def topics_command(settings: Settings) -> int:
    """Create the missing topics and check the layout; 2 when partition counts are wrong."""
    try:
        eventloop.run(
            prepare_topics(
                settings.kafka(),
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
    if (status := access_status(settings)) is not None:
        return status
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the answer below says it once
    try:
        brokers = eventloop.run(wait_for_cluster(settings.kafka(), timeout))
    except TimeoutError:
        print(  # noqa: T201
            f"marketban ping: the Kafka cluster at {settings.kafka_bootstrap} did not answer "
            f"within {timeout:.0f}s; check MARKETBAN_KAFKA_BOOTSTRAP",
            file=sys.stderr,
        )
        return 2
    print(f"ok: {settings.kafka_bootstrap} brokers={brokers}")  # noqa: T201
    return 0
