"""The highwater correction to faust-streaming (marketban.adapters.faust_fixes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from marketban.adapters.faust_fixes import _highwaters


class _Consumer:
    """aiokafka's consumer as recovery sees it: LSO known for fetched partitions only."""

    def __init__(self, lso: dict[str, int | None], ends: dict[str, int]) -> None:
        self.lso, self.ends = lso, ends
        self.asked: list[list[str]] = []

    def last_stable_offset(self, tp: str) -> int | None:
        return self.lso[tp]

    async def end_offsets(self, tps: list[str]) -> dict[str, int]:
        self.asked.append(tps)
        return {tp: self.ends[tp] for tp in tps}


def _thread(consumer: _Consumer, *, in_transaction: bool) -> Any:
    return SimpleNamespace(
        _ensure_consumer=lambda: consumer,
        consumer=SimpleNamespace(in_transaction=in_transaction),
    )


async def test_an_unknown_last_stable_offset_is_asked_of_the_broker() -> None:
    consumer = _Consumer({"a": 5, "b": None}, {"a": 99, "b": 27})
    got = await _highwaters(_thread(consumer, in_transaction=True), ["a", "b"])
    assert got == {"a": 5, "b": 27}  # never None: Faust would make that -1
    assert consumer.asked == [["b"]]


async def test_without_transactions_the_end_offsets_are_used() -> None:
    consumer = _Consumer({"a": None}, {"a": 12})
    assert await _highwaters(_thread(consumer, in_transaction=False), ["a"]) == {"a": 12}
