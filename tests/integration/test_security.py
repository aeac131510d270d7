"""SASL_SSL on the real broker (issue 7): SCRAM-SHA-512 over TLS with the CA kafka.sh made."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.stream import outcome, replay, through_worker, worker_env

STATE_DIR = Path(
    os.environ.get("MARKETBAN_KAFKA_STATE_DIR", Path(__file__).parents[2] / ".local" / "kafka")
)
SCENARIO = Path(__file__).parents[1] / "scenarios" / "rules.jsonl"


@pytest.fixture
def sasl_env(kafka_env: dict[str, str]) -> dict[str, str]:
    """The test environment pointed at the broker's SASL_SSL listener, with its credentials."""
    env_file = STATE_DIR / "sasl.env"
    if not env_file.exists():
        pytest.fail(
            f"no {env_file}: the SASL_SSL tests need the broker deploy/local-kafka/kafka.sh starts"
        )
    env = dict(kafka_env)
    for line in env_file.read_text().splitlines():
        name, _, value = line.partition("=")
        env[name] = value
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketban.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_worker_and_the_cli_decide_over_sasl_ssl_and_never_log_the_password(
    sasl_env: dict[str, str], tmp_path: Path
) -> None:
    lines = SCENARIO.read_bytes().splitlines(keepends=True)[:40]
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    streamed, log = through_worker(sasl_env, tmp_path / "in.jsonl", tmp_path)
    assert outcome(streamed) == outcome(replay(tmp_path / "in.jsonl"))
    assert outcome(streamed)[0], "no decision came back"
    assert sasl_env["MARKETBAN_KAFKA_PASSWORD"] not in log


@pytest.mark.parametrize("command", [("ping",), ("worker",), ("tail", "--idle", "1")])
def test_a_wrong_password_fails_fast_with_a_clear_message(
    sasl_env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = worker_env({**sasl_env, "MARKETBAN_KAFKA_PASSWORD": "not-the-password"}, tmp_path)
    started = time.monotonic()
    proc = _run(env, *command)
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "refused user 'marketban'" in proc.stderr
    assert "MARKETBAN_KAFKA_PASSWORD" in proc.stderr  # says what to check ...
    assert "not-the-password" not in proc.stderr + proc.stdout  # ... never what was given
    assert took < 15, f"took {took:.1f}s"


def test_a_certificate_from_another_ca_is_refused_by_the_client(
    sasl_env: dict[str, str],
) -> None:
    env = {**sasl_env, "MARKETBAN_KAFKA_CA_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    proc = _run(env, "ping", "--timeout", "5")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "does not verify" in proc.stderr


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_a_connection_without_credentials_is_refused(
    sasl_env: dict[str, str], protocol: str
) -> None:
    # PLAINTEXT: no TLS, no SASL. SSL: the broker's TLS is trusted, but no SASL login follows.
    code = f"""
import asyncio, ssl, sys
from aiokafka.admin import AIOKafkaAdminClient
async def main():
    ctx = ssl.create_default_context(cafile={sasl_env["MARKETBAN_KAFKA_CA_FILE"]!r})
    admin = AIOKafkaAdminClient(bootstrap_servers={sasl_env["MARKETBAN_KAFKA_BOOTSTRAP"]!r},
        security_protocol={protocol!r}, ssl_context=ctx if {protocol!r} == "SSL" else None,
        request_timeout_ms=5000)
    try:
        await admin.start()
        print("connected:", await admin.describe_cluster())
    except Exception as exc:
        print("refused:", type(exc).__name__)
        sys.exit(3)
    finally:
        await admin.close()
asyncio.run(main())
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr[-2000:]
    assert "refused:" in proc.stdout
