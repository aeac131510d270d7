"""A one-line progress counter for long commands, drawn only when its stream is a terminal."""

from __future__ import annotations

import time
from typing import IO, Final

#: The least time between two redraws: a human reads no faster, and drawing costs the hot loop.
_REDRAW_S: Final = 0.25


class Progress:
    """``label: done of total (rate/s)`` redrawn in place on a terminal; nothing elsewhere.

    Scripts and logs get only the command's own closing line, so their output stays the same
    whether or not a person watches.
    """

    def __init__(self, out: IO[str], label: str, total: int | None = None) -> None:
        self._out = out
        self._label = label
        self._total = total
        self._drawn = False
        try:
            self._tty = out.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._started = self._last = time.monotonic()

    def update(self, done: int, total: int | None = None) -> None:
        """Show ``done`` (and a new total, when it became known) if a redraw is due."""
        if not self._tty:
            return
        if total is not None:
            self._total = total
        now = time.monotonic()
        if now - self._last < _REDRAW_S:
            return
        self._last = now
        rate = done / max(now - self._started, 1e-9)
        of = f" of {self._total:,}" if self._total else ""
        self._out.write(f"\r\x1b[K{self._label}: {done:,}{of} ({rate:,.0f}/s)")
        self._out.flush()
        self._drawn = True

    def clear(self) -> None:
        """Remove the counter line, so the next line of output starts clean."""
        if self._drawn:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._drawn = False
