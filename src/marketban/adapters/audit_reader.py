"""Reads the input and output topics for ``marketban audit``, read_committed, up to their ends."""

from __future__ import annotations

import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from marketban.adapters import eventloop
from marketban.adapters.kafka_admin import partition_counts
from marketban.adapters.progress import Progress
from marketban.domain.calendars import default_calendar
from marketban.domain.engine import ROUTED, Engine
from marketban.domain.models import INPUT_TOPICS, OUTPUT_TOPICS
from marketban.service.audit import Record, Report, audit
from marketban.settings import Settings, proxy_config


def _record(topic: str, rec: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(
        topic=topic,
        partition=rec.partition,
        offset=rec.offset,
        key=rec.key.decode("utf-8", errors="replace") if rec.key is not None else None,
        value=rec.value or b"",
        timestamp_ms=rec.timestamp,
        key_bytes=rec.key,
    )


def _full_names(settings: Settings, names: tuple[str, ...]) -> dict[str, str]:
    internal = settings.routed_topics
    return {internal.get(n) or settings.topic(n): n for n in names}


async def read_topics(
    settings: Settings, names: tuple[str, ...], idle_s: float
) -> tuple[list[Record], dict[str, int]]:
    """Every committed record of the named topics (spec names), and each one's partition count.

    The records are those up to the ends the topics had when asked.

    Stops when every partition reached the last stable offset it had at the start, or after
    ``idle_s`` without a record (a partition whose end is an abort marker is never "reached").
    """
    full = _full_names(settings, names)
    consumer = AIOKafkaConsumer(
        **settings.kafka(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    records: list[Record] = []
    admin = AIOKafkaAdminClient(**settings.kafka())
    try:
        await admin.start()
        known = await partition_counts(admin, list(full), wait_s=0)
        await consumer.start()
        tps = [TopicPartition(t, p) for t, n in known.items() for p in range(n)]
        counts = {full[t]: n for t, n in known.items()}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        progress = Progress(sys.stderr, "read", sum(ends[tp] - starts[tp] for tp in tps))
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, recs in batches.items():
                records.extend(_record(full[tp.topic], r) for r in recs if r.offset < ends[tp])
            if batches:
                quiet_since = loop.time()
                progress.update(len(records))
            elif loop.time() - quiet_since > idle_s:
                break
        progress.clear()
    finally:
        await consumer.stop()
        await admin.close()
    return records, counts


async def run_audit(settings: Settings, idle_s: float) -> Report:
    """Read the deployment's topics and audit them."""
    # One pass over both, so a quiet partition costs the idle wait once, not twice.
    names = INPUT_TOPICS + tuple(sorted(ROUTED)) + OUTPUT_TOPICS
    records, counts = await read_topics(settings, names, idle_s)
    inputs = [r for r in records if r.topic not in OUTPUT_TOPICS]
    outputs = [r for r in records if r.topic in OUTPUT_TOPICS]
    calendar = default_calendar(settings.holidays_file)
    partitions = counts.get("orders") or settings.topic_partitions
    proxy = proxy_config(settings)
    return audit(
        lambda: Engine(calendar, proxy=proxy), settings.topic(""), partitions, inputs, outputs
    )


def audit_command(settings: Settings, idle_s: float) -> int:
    """CLI entry of ``marketban audit``: the report as JSON; exit 1 on any problem."""
    report = eventloop.run(run_audit(settings, idle_s))
    data = report.as_dict()
    print(json.dumps(data, indent=2, ensure_ascii=False))  # noqa: T201
    problems = ", ".join(f"{k} {v}" for k, v in data["problems"].items())
    verdict = "OK" if report.ok else "PROBLEMS"
    print(f"marketban audit: {verdict}: {problems}", file=sys.stderr)  # noqa: T201
    return 0 if report.ok else 1
