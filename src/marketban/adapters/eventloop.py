"""The event loop every marketban process runs on: uvloop's.

aiokafka's protocol work and socket writes run on the event loop; under load a worker's loop is
busy more than half the time, and every hop of a transaction (AddPartitionsToTxn, produce,
offsets, EndTxn) waits its turn there. uvloop's transports and scheduling are libuv and C: the
same worker at 2,000 orders/s measured p50 49-51 ms / p99 75-77 ms on it against 54-56 / 84-112
on asyncio's own loop (docs/benchmarks.md). The benchmark's passthrough lanes use it too, so the
floor they measure is the same transport's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def new_loop() -> asyncio.AbstractEventLoop:
    """A fresh uvloop event loop."""
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a uvloop event loop."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
