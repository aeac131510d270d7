from __future__ import annotations

import os
import subprocess
import sys

import pytest

from marketban.cli import main


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "ping" in out
    assert "MARKETBAN_" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: marketban" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "marketban.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("marketban ")


def test_ping_fails_fast_and_clearly_without_a_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARKETBAN_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert main(["ping", "--timeout", "1"]) == 2
    assert "did not answer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [["audit", "--idle", "1"], ["tail", "--idle", "1"], ["topics"], ["ping", "--timeout", "1"]],
)
def test_a_command_against_an_unreachable_cluster_exits_2_with_one_line_naming_it(
    args: list[str],
) -> None:
    env = {**os.environ, "MARKETBAN_KAFKA_BOOTSTRAP": "127.0.0.1:9"}  # nothing listens on 9
    proc = subprocess.run(
        [sys.executable, "-m", "marketban.cli", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2, proc.stderr.decode()
    assert len(lines) == 1, lines
    assert "127.0.0.1:9" in lines[0]
    assert "MARKETBAN_KAFKA_BOOTSTRAP" in lines[0]
