"""What a task writes for one input record: the partition check, then the engine (pure).

The decider and ``marketban audit`` both call ``handle_in_task``, so the audit's replay is the
stream's own handling, record for record.
"""

from __future__ import annotations

from datetime import datetime

from marketban.decider.partitioning import misplaced
from marketban.domain.engine import Engine, Output, Payload, Source


def handle_in_task(  # noqa: PLR0917 - one record's parts, each named
    engine: Engine,
    task: int,
    partitions: int,
    topic: str,
    key: str | None,
    key_bytes: bytes | None,
    payload: Payload,
    source: Source,
    now: datetime | None,
) -> list[Output]:
    """The outputs task ``task`` writes for a record of ``topic`` (spec name).

    A record outside its key's partition is rejected (an order also blocked: fail closed). A ban
    is applied by every task; only the task of the ban's own partition writes what it causes.
    """
    error = misplaced(topic, key_bytes, source.partition or 0, partitions)
    if error is not None:
        return engine.fail_closed(topic, key, payload, source, error)
    outputs = engine.handle(topic, key, payload, source, now)
    if topic == "bans" and source.partition != task:
        return []
    return outputs
