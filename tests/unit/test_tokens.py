"""Analysts' tokens: hashes in a file, re-read when it changes; the one-person token."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from marketban.adapters.tokens import OPERATOR, Analysts, parse_tokens


def _line(token: str, name: str) -> str:
    return f"{hashlib.sha256(token.encode()).hexdigest()} {name}\n"


def test_a_token_is_known_by_its_hash_and_names_its_analyst(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# desk\n" + _line("t-li", "li.wei") + _line("t-zh", "zhang.min"))
    analysts = Analysts("", file)
    assert analysts.analyst("t-li") == "li.wei"
    assert analysts.analyst("t-zh") == "zhang.min"
    assert analysts.analyst("t-unknown") is None
    assert "t-li" not in file.read_text()  # only hashes are stored


def test_a_token_removed_from_the_file_is_refused_at_once(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text(_line("t-li", "li.wei") + _line("t-zh", "zhang.min"))
    analysts = Analysts("", file)
    assert analysts.analyst("t-li") == "li.wei"
    file.write_text(_line("t-zh", "zhang.min"))
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock
    assert analysts.analyst("t-li") is None
    assert analysts.analyst("t-zh") == "zhang.min"


def test_the_single_token_is_the_operators_and_no_token_means_nobody(tmp_path: Path) -> None:
    assert Analysts("secret", None).analyst("secret") == OPERATOR
    assert Analysts("secret", None).analyst("other") is None
    assert not Analysts("", None).configured
    assert Analysts("", tmp_path / "missing").analyst("x") is None


def test_malformed_lines_are_skipped() -> None:
    good = hashlib.sha256(b"x").hexdigest()
    assert parse_tokens(f"nothex li\n{good}\n{good} a.b  # c\n") == {good: "a.b"}
