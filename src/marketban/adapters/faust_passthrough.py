"""Faust's own ceiling: the worker's agent shape with no engine and no tables.

One agent takes the input in batches and sends each record's bytes unchanged to the output topic,
same partition, under the source partition's transactional id, exactly once, as
``MarketbanWorker`` does. ``marketban bench e2e`` runs it next to the raw aiokafka passthrough:
the gap between the two is what faust-streaming's per-event machinery costs on this machine.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

import faust

from marketban.adapters.worker import faust_broker, source_transactional_id
from marketban.settings import Settings


def faust_passthrough_command(  # noqa: PLR0917 - one CLI call
    settings: Settings,
    group: str,
    inputs: list[str],
    output: str,
    batch_max: int,
    batch_wait: float,
) -> int:
    """``marketban bench faust-passthrough``: run the Faust copy until stopped."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = faust.App(
        group,
        **faust_broker(settings),
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="marketban-faust-passthrough-"),
        processing_guarantee="exactly_once",
        broker_commit_interval=0.05,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    source = app.topic(
        *inputs, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def copy(stream: Any) -> None:  # noqa: ANN401 - faust is untyped
        producer = app.consumer.transactions.producer
        async for events in stream.take_events(batch_max, within=batch_wait):
            for event in events:
                msg = event.message
                tid = source_transactional_id(app, event)
                await producer.send(
                    output, msg.key, msg.value, msg.partition, None, None, transactional_id=tid
                )

    app.agent(source, name="copy")(copy)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    return 0
