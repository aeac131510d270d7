"""Helpers for tests that run marketban's worker and CLI against the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from marketban.adapters.kafka_admin import wait_caught_up as caught_up
from tests.integration.workers import WorkerProcess, free_port

INPUTS = ("bans", "accounts", "orders", "evidence", "holdings", "executions")


def worker_env(base: dict[str, str], data_dir: Path, partitions: int = 3) -> dict[str, str]:
    env = dict(base)
    env.update(
        {
            "MARKETBAN_DATA_DIR": str(data_dir),
            "MARKETBAN_WEB_PORT": str(free_port()),
            "MARKETBAN_TOPIC_PARTITIONS": str(partitions),
        }
    )
    return env


def start_worker(env: dict[str, str], log: Path, ready_within_s: float = 120) -> WorkerProcess:
    """Start ``marketban worker`` and wait until its /health/ready says so."""
    worker = WorkerProcess(["-m", "marketban.cli", "worker"], env, log)
    url = f"http://127.0.0.1:{env['MARKETBAN_WEB_PORT']}/health/ready"
    deadline = time.monotonic() + ready_within_s
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.proc.returncode}) before ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return worker
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or 503 while it recovers
        time.sleep(0.2)
    worker.stop()
    raise AssertionError(f"the worker was not ready within {ready_within_s:.0f}s")


def cli(env: dict[str, str], *args: str, stdin: bytes | None = None, timeout: float = 300) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", "marketban.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"marketban {args[0]} failed: {proc.stderr.decode()[-3000:]}"
    return proc.stdout


def replay(path: Path) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "marketban.cli", "replay", str(path)],
        capture_output=True,
        check=True,
    ).stdout


def outcome(
    output: bytes,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Decisions by order id and violations by id, without the processing-time stamps."""
    decisions: dict[str, list[dict[str, Any]]] = {}
    violations: dict[str, list[dict[str, Any]]] = {}
    for line in output.splitlines():
        record = json.loads(line)
        value = dict(record["value"])
        if record["topic"] == "decisions":
            value.pop("decided_at")
            decisions.setdefault(value["order_id"], []).append(value)
        elif record["topic"] == "violations":
            value.pop("detected_at")
            violations.setdefault(value["violation_id"], []).append(value)
    return decisions, violations


async def wait_caught_up(bootstrap: str, prefix: str, within_s: float = 120) -> None:
    """Wait until the worker group has committed every input record (lag 0)."""
    await caught_up(bootstrap, f"{prefix}worker", [f"{prefix}{t}" for t in INPUTS], within_s)
