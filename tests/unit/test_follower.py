"""The topic follower's start: what it asks the broker, in which order (no broker here)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from marketban.adapters import follower
from marketban.adapters.follower import TopicFollower


class _Consumer:
    """Records the calls a follower makes; its topics are empty."""

    calls: list[str]

    def __init__(self, **_options: Any) -> None:
        self.calls = _Consumer.calls

    async def start(self) -> None:
        self.calls.append("start")

    def assign(self, _tps: list[Any]) -> None:
        self.calls.append("assign")  # from here on a fetch waits on the broker

    async def seek_to_beginning(self, *_tps: Any) -> None:
        self.calls.append("seek")

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.calls.append("end_offsets")
        return dict.fromkeys(tps, 0)

    async def getmany(self, **_options: Any) -> dict[Any, list[Any]]:
        await asyncio.sleep(0.01)
        return {}

    async def stop(self) -> None:
        self.calls.append("stop")


async def test_a_follower_asks_for_its_end_offsets_before_it_assigns_the_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Asked once the partitions are assigned, the request queues behind the fetch waiting on the
    # broker (its fetch_max_wait, 0.5 s), on every follower of every worker start.
    _Consumer.calls = []
    monkeypatch.setattr(follower, "AIOKafkaConsumer", _Consumer)
    view = TopicFollower({}, ["p.ban-windows"], 3, lambda _rec: None)
    await view.start()
    await asyncio.wait_for(view.ready.wait(), 1)  # empty topics: ready at once
    await view.stop()
    calls = _Consumer.calls
    assert calls.index("end_offsets") < calls.index("assign") < calls.index("seek")
