"""The progress line of long commands: drawn on a terminal, absent from pipes and logs."""

from __future__ import annotations

import io

import pytest

from marketban.adapters import progress as progress_module
from marketban.adapters.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_in_place_on_a_terminal_and_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "_REDRAW_S", 0.0)
    out = _Terminal()
    p = Progress(out, "fed", total=10)
    p.update(4)
    assert "\rfed" not in out.getvalue()  # the line is erased before each redraw
    assert "fed: 4 of 10 (" in out.getvalue()
    p.clear()
    assert out.getvalue().endswith("\r\x1b[K")


def test_progress_writes_nothing_when_the_stream_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "_REDRAW_S", 0.0)
    out = io.StringIO()
    p = Progress(out, "fed")
    p.update(4)
    p.clear()
    assert out.getvalue() == ""
