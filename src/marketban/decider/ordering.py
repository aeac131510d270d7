"""The reproducible order of one task's records (spec R6), shared by the decider and the audit.

A task's records — its partition of every account-keyed topic and every partition of ``bans`` —
are processed by record timestamp, then a fixed topic order (reference data before the flow it
conditions), then partition, then offset. The topics marketban creates stamp LogAppendTime, so
the timestamp is the broker's arrival order and a record produced after another sorts after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol, TypeVar

TOPIC_ORDER: Final = ("bans", "accounts", "evidence", "holdings", "orders", "executions")
TOPIC_RANK: Final = {t: i for i, t in enumerate(TOPIC_ORDER)}

MergeKey = tuple[int, int, int, int]


def merge_key(timestamp_ms: int, topic: str, partition: int, offset: int) -> MergeKey:
    """Sort key of a record of ``topic`` (spec name) in its task's order."""
    return (timestamp_ms, TOPIC_RANK.get(topic, len(TOPIC_ORDER)), partition, offset)


class Placed(Protocol):
    """A record with what its place in the order needs."""

    @property
    def topic(self) -> str: ...  # noqa: D102
    @property
    def partition(self) -> int: ...  # noqa: D102
    @property
    def offset(self) -> int: ...  # noqa: D102
    @property
    def timestamp_ms(self) -> int: ...  # noqa: D102


R = TypeVar("R", bound=Placed)


def task_records(records: Iterable[R], task: int) -> list[R]:
    """Task ``task``'s records (its partition of each account topic, all of bans), in order."""
    mine = [r for r in records if r.topic == "bans" or r.partition == task]
    mine.sort(key=lambda r: merge_key(r.timestamp_ms, r.topic, r.partition, r.offset))
    return mine
