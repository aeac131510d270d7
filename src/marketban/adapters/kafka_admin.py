"""Small Kafka administration helpers on aiokafka: metadata checks and topic creation."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

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
    """Create the named topics if they do not exist (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if not missing:
            return
        try:
            new = [NewTopic(n, partitions, replication) for n in missing]
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            # Another worker created them between our list and create: that is the goal anyway.
            return
    finally:
        await admin.close()


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
