"""``marketban feed`` and ``marketban tail``: the replay format (spec R7) to and from Kafka."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from typing import IO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from marketban.domain.models import OUTPUT_TOPICS
from marketban.service.replay import LineInput, read_line
from marketban.settings import Settings


class WorkerNotCatchingUpError(RuntimeError):
    """The worker did not apply a fed record in time."""


async def _wait_applied(
    admin: AIOKafkaAdminClient, group: str, tp: TopicPartition, offset: int, wait_s: float
) -> None:
    """Wait until the worker's group committed past ``offset`` on ``tp``.

    With exactly-once processing the offset commit is atomic with the record's outputs and table
    writes, so a committed offset means the record was fully applied.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.002
    while True:
        try:
            committed = await admin.list_consumer_group_offsets(group, partitions=[tp])
        except KafkaError:
            committed = {}  # e.g. the group has no coordinator yet: nothing is applied yet
        meta = committed.get(tp)
        if meta is not None and meta.offset > offset:
            return
        if loop.time() > deadline:
            seen = meta.offset if meta is not None else "nothing"
            raise WorkerNotCatchingUpError(
                f"the worker (group {group}) did not apply {tp.topic}[{tp.partition}]@{offset} "
                f"within {wait_s:.0f}s (committed: {seen}); is `marketban worker` running with "
                "the same MARKETBAN_TOPIC_PREFIX and MARKETBAN_KAFKA_BOOTSTRAP?"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def feed(
    settings: Settings, lines: Iterable[bytes], wait_s: float, log: IO[str], *, wait: bool = True
) -> int:
    """Produce replay lines to the input topics, each applied by the worker before the next."""
    producer = AIOKafkaProducer(**settings.kafka(), acks="all", enable_idempotence=True)
    admin = AIOKafkaAdminClient(**settings.kafka())
    fed = skipped = 0
    try:
        await producer.start()
        await admin.start()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            read = read_line(number, line)
            if not isinstance(read, LineInput):
                skipped += 1
                log.write(f"line {number} not fed: {read[2].error}\n")  # type: ignore[union-attr]
                continue
            value = read.payload if isinstance(read.payload, bytes) else orjson.dumps(read.payload)
            key = read.key.encode() if read.key is not None else None
            if wait:
                meta = await producer.send_and_wait(settings.topic(read.topic), value, key=key)
                tp = TopicPartition(meta.topic, meta.partition)
                await _wait_applied(admin, settings.app_id, tp, meta.offset, wait_s)
            else:
                await producer.send(settings.topic(read.topic), value, key=key)
            fed += 1
            if fed % 100 == 0:
                log.write(f"fed {fed} records\n")
                log.flush()
    finally:
        await producer.stop()
        await admin.close()
    log.write(f"fed {fed} records, {skipped} lines not fed\n")
    return fed


async def tail(settings: Settings, idle_s: float, out: IO[bytes]) -> int:
    """Print the output topics from the beginning (read_committed) until ``idle_s`` of quiet."""
    names = {settings.topic(n): n for n in OUTPUT_TOPICS}
    consumer = AIOKafkaConsumer(
        *names,
        **settings.kafka(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    loop = asyncio.get_running_loop()
    last = loop.time()
    count = 0
    try:
        await consumer.start()
        while loop.time() - last < idle_s:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for r in records:
                    line = {
                        "topic": names[tp.topic],
                        "key": r.key.decode("utf-8", errors="replace") if r.key else None,
                        "value": orjson.Fragment(r.value or b"null"),
                    }
                    out.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
                    count += 1
                last = loop.time()
            out.flush()
    finally:
        await consumer.stop()
    return count


def feed_command(settings: Settings, file: str, wait_s: float, *, wait: bool = True) -> int:
    """CLI entry of ``marketban feed``."""
    try:
        if file == "-":
            asyncio.run(feed(settings, sys.stdin.buffer, wait_s, sys.stderr, wait=wait))
        else:
            with open(file, "rb") as lines:  # noqa: PTH123 - a file object is what we stream
                asyncio.run(feed(settings, lines, wait_s, sys.stderr, wait=wait))
    except WorkerNotCatchingUpError as exc:
        print(f"marketban feed: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except OSError as exc:
        print(f"marketban feed: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def tail_command(settings: Settings, idle_s: float) -> int:
    """CLI entry of ``marketban tail``."""
    asyncio.run(tail(settings, idle_s, sys.stdout.buffer))
    return 0
