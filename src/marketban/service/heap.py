"""How a marketban process tunes Python's cyclic garbage collector for its workload."""

from __future__ import annotations

import gc


def tune_collector() -> None:
    """Freeze what is alive now out of collection and collect the young generation rarely.

    Every record in flight allocates a handful of objects; with the default thresholds the
    cyclic collector ran so often on the order path that it took most of ``Lane.add``'s time in a
    profile of the reference load, and each full collection walks every object still alive.
    What is alive when this is called (modules, calendars, reference state) is frozen out.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
