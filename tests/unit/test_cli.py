from __future__ import annotations

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
    assert main(["ping", "--timeout", "1"]) == 1
    assert "did not answer" in capsys.readouterr().err
