"""``marketban feed`` and ``marketban tail``: the replay format (spec R7) to and from Kafka."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from marketban.adapters import eventloop
from marketban.adapters.progress import Progress
from marketban.decider.batches import Send, send_grouped
from marketban.decider.partitioning import partition_of
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
        delay = min(delay * 2, 0.01)


def _lines_to_feed(lines: Iterable[bytes], log: IO[str], skipped: list[int]) -> Iterator[LineInput]:
    """The replay lines that name an input topic; each other line is reported on ``log``."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        read = read_line(number, line)
        if isinstance(read, LineInput):
            yield read
        else:
            skipped.append(number)
            log.write(f"line {number} not fed: {read[2].error}\n")  # type: ignore[union-attr]


def _encoded(read: LineInput) -> tuple[bytes | None, bytes]:
    value = read.payload if isinstance(read.payload, bytes) else orjson.dumps(read.payload)
    return (read.key.encode() if read.key is not None else None), value


async def _feed_waiting(
    settings: Settings, reads: Iterable[LineInput], wait_s: float, progress: Progress
) -> int:
    """Each record produced, then applied by the worker, before the next: the input's order."""
    producer = AIOKafkaProducer(**settings.kafka(), acks="all", enable_idempotence=True)
    admin = AIOKafkaAdminClient(**settings.kafka())
    fed = 0
    try:
        await producer.start()
        await admin.start()
        for read in reads:
            key, value = _encoded(read)
            meta = await producer.send_and_wait(settings.topic(read.topic), value, key=key)
            tp = TopicPartition(meta.topic, meta.partition)
            await _wait_applied(admin, settings.app_id, tp, meta.offset, wait_s)
            fed += 1
            progress.update(fed)
    finally:
        await producer.stop()
        await admin.close()
    return fed


#: Records handed to the producer at once by ``--no-wait``: large enough for full batches,
#: small enough that a big file is never held in memory.
_CHUNK: Final = 20_000


async def _feed_unordered(
    settings: Settings, reads: Iterable[LineInput], progress: Progress
) -> int:
    """Every record produced as fast as batches allow, in order within each partition only."""
    producer = AIOKafkaProducer(
        **settings.kafka(), acks="all", enable_idempotence=True, linger_ms=5,
        max_batch_size=512 * 1024,
    )  # fmt: skip
    counts: dict[str, int] = {}
    spread = itertools.count()
    fed = 0
    pending: list[Send] = []
    inflight: list[tuple[Any, int]] = []
    try:
        await producer.start()
        for read in reads:
            topic = settings.topic(read.topic)
            partitions = counts.get(topic)
            if partitions is None:
                partitions = counts[topic] = len(await producer.partitions_for(topic))
            key, value = _encoded(read)
            # The partition aiokafka's default partitioner would give; keyless records spread.
            part = partition_of(key, partitions) if key is not None else next(spread) % partitions
            pending.append((topic, part, key, value))
            if len(pending) >= _CHUNK:
                sent = await send_grouped(producer, pending)
                # One chunk is on its way to the broker while the next one is read.
                await asyncio.gather(*(f for f, _ in inflight))
                fed += len(pending)
                pending, inflight = [], sent
                progress.update(fed)
        sent = await send_grouped(producer, pending)
        await asyncio.gather(*(f for f, _ in inflight), *(f for f, _ in sent))
        fed += len(pending)
    finally:
        await producer.stop()
    return fed


async def feed(
    settings: Settings, lines: Iterable[bytes], wait_s: float, log: IO[str], *, wait: bool = True
) -> int:
    """Produce replay lines to the input topics; by default each applied before the next."""
    progress = Progress(log, "fed")
    skipped: list[int] = []
    reads = _lines_to_feed(lines, log, skipped)
    try:
        if wait:
            fed = await _feed_waiting(settings, reads, wait_s, progress)
        else:
            fed = await _feed_unordered(settings, reads, progress)
    finally:
        progress.clear()
    log.write(f"fed {fed} records, {len(skipped)} lines not fed\n")
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
            eventloop.run(feed(settings, sys.stdin.buffer, wait_s, sys.stderr, wait=wait))
        else:
            with open(file, "rb") as lines:  # noqa: PTH123 - a file object is what we stream
                eventloop.run(feed(settings, lines, wait_s, sys.stderr, wait=wait))
    except WorkerNotCatchingUpError as exc:
        print(f"marketban feed: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except OSError as exc:
        print(f"marketban feed: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def tail_command(settings: Settings, idle_s: float) -> int:
    """CLI entry of ``marketban tail``."""
    eventloop.run(tail(settings, idle_s, sys.stdout.buffer))
    return 0
