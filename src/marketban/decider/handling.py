"""What a task writes for one input record: the partition check, then the engine (pure).

The decider and ``marketban audit`` both call ``handle_in_task``, so the audit's replay is the
stream's own handling, record for record.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import datetime
from typing import Final

from marketban.decider.partitioning import misplaced
from marketban.domain.engine import BanOutcome, Engine, Output, Payload, Source

#: Outcomes of ``bans`` records a worker keeps for its other tasks (the oldest go first: a task
#: that lags further behind computes the outcome itself, which gives the same).
MAX_BAN_OUTCOMES: Final = 20_000


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
    ban_outcomes: MutableMapping[tuple[int, int], BanOutcome] | None = None,
) -> list[Output]:
    """The outputs task ``task`` writes for a record of ``topic`` (spec name).

    A record outside its key's partition is rejected (an order also blocked: fail closed). A ban
    is applied by every task; only the task of the ban's own partition writes what it causes.
    ``ban_outcomes``, shared by a worker's tasks, lets one task's work on a ban serve the rest.
    """
    if topic == "bans":
        if ban_outcomes is None or source.partition is None or source.offset is None:
            outputs = engine.handle(topic, key, payload, source, now)
        else:
            at = (source.partition, source.offset)
            outcome = ban_outcomes.get(at)
            if outcome is None:
                outputs, ban_outcomes[at] = engine.handle_ban(key, payload, source)
                if len(ban_outcomes) > MAX_BAN_OUTCOMES:
                    del ban_outcomes[next(iter(ban_outcomes))]
            else:
                outputs = engine.take_ban(outcome)
        return outputs if source.partition == task else []
    error = misplaced(topic, key_bytes, source.partition or 0, partitions)
    if error is not None:
        return engine.fail_closed(topic, key, payload, source, error)
    return engine.handle(topic, key, payload, source, now)
