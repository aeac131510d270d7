"""Where a record belongs: murmur2(key) mod N, the partitioner of Kafka's Java client and aiokafka.

Pure (no Kafka client): the decider checks every account-keyed record with it and ``marketban
audit`` replays the same check.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Final

#: Input topics keyed by account: a record of these must sit in murmur2(key) mod N.
ACCOUNT_TOPICS: Final = ("accounts", "evidence", "holdings", "orders", "executions")

#: How the rejection of a misplaced record begins (the metrics count these apart).
MISPLACED: Final = "record in partition "

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (org.apache.kafka.common.utils.Utils.murmur2), unsigned."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length >> 2
    if whole:
        # One unpack of every 4-byte word: the per-word slicing was most of the cost.
        words = _WORDS.get(whole)
        if words is None:
            words = _WORDS[whole] = struct.Struct(f"<{whole}I")
        for word in words.unpack_from(data):
            k = (word * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) ^ (k * _M)) & _MASK
    rest = length & 3
    if rest:
        tail = whole << 2
        if rest == 3:  # noqa: PLR2004 - the tail bytes of the Java code's switch
            h ^= data[tail + 2] << 16
        if rest >= 2:  # noqa: PLR2004
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


_WORDS: dict[int, struct.Struct] = {}


@lru_cache(maxsize=1 << 18)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def misplaced(topic: str, key: bytes | None, partition: int, partitions: int) -> str | None:
    """Why a record of ``topic`` cannot be decided in ``partition``, or None when it can.

    Only account-keyed topics are checked; a record without a key is left to the engine, which
    rejects it for not being keyed by its account.
    """
    if key is None or topic not in ACCOUNT_TOPICS:
        return None
    right = partition_of(key, partitions)
    if right == partition:
        return None
    return (
        f"{MISPLACED}{partition} of {topic}, but its key belongs in partition {right} "
        f"(murmur2 of the key mod {partitions}): it cannot be decided against its account's "
        "state; produce account-keyed records with Kafka's default murmur2 partitioner "
        "(librdkafka clients: partitioner=murmur2_random)"
    )
