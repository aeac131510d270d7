"""One correction to faust-streaming 0.15.3, applied by the worker before its app starts.

Under ``processing_guarantee="exactly_once"`` Faust's table recovery asks the consumer for each
changelog partition's last stable offset (``AIOKafkaConsumer.last_stable_offset``). aiokafka
knows that only after a fetch response for the partition; before, it is ``None``, which Faust turns
into a highwater of -1. A worker that holds RocksDB state for a partition it is newly given (it
had it before a rebalance, or as a standby) then stops with ``ConsistencyError: The persisted
offset ... is higher than the last offset in that topic (highwater) (26 > -1)``; with the check
switched off it would recover nothing and decide from stale state. Seen in the fault suite: the
worker that was to take over from a SIGKILLed one stopped instead (faust-streaming issues #158 and
#597 describe the same error).

The correction asks the broker when the consumer does not know: ``end_offsets`` of a
read_committed consumer is a ListOffsets request at that isolation level, whose answer is the
last stable offset itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

FIXED_VERSION = "0.15.3"


async def _highwaters(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:  # noqa: ANN401
    consumer = self._ensure_consumer()
    tps = list(partitions)
    if not self.consumer.in_transaction:
        return dict(await consumer.end_offsets(tps))
    known = {tp: consumer.last_stable_offset(tp) for tp in tps}
    unknown = [tp for tp, offset in known.items() if offset is None]
    if unknown:
        known.update(await consumer.end_offsets(unknown))
    return known


def apply() -> None:
    """Install the correction (idempotent); warn when Faust is not the version it was made for."""
    if faust.__version__ != FIXED_VERSION:
        log.warning(
            "faust-streaming %s: the highwater correction was written for %s; check whether "
            "AIOKafkaConsumerThread._highwaters still needs it (marketban.adapters.faust_fixes)",
            faust.__version__,
            FIXED_VERSION,
        )
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]  # noqa: SLF001
