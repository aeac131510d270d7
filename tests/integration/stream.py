"""Helpers for tests that run marketban's worker and CLI against the real broker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from marketban.adapters.audit_reader import read_topics
from marketban.adapters.kafka_admin import wait_caught_up as caught_up
from marketban.adapters.processes import Child, free_port, wait_ready
from marketban.settings import Settings
from tests.integration.api import eventually, http

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


def start_worker(env: dict[str, str], log: Path, ready_within_s: float = 120) -> Child:
    """Start ``marketban worker`` and wait until its /health/ready says so."""
    worker = Child(["-m", "marketban.cli", "worker"], env, log).start()
    try:
        wait_ready(worker, int(env["MARKETBAN_WEB_PORT"]), ready_within_s)
    except (RuntimeError, TimeoutError):
        worker.stop()
        raise
    return worker


def wait_split(*envs: dict[str, str], within_s: float = 60) -> None:
    """Wait until each worker holds tasks and together they hold every partition's task once."""
    partitions = {f"task_{p}" for p in range(int(envs[0]["MARKETBAN_TOPIC_PARTITIONS"]))}

    def held() -> bool:
        owned = [_tasks_held(int(env["MARKETBAN_WEB_PORT"])) for env in envs]
        every = [t for tasks in owned for t in tasks]
        return all(owned) and sorted(every) == sorted(partitions)

    eventually(held, within_s, "the workers' group to split the tasks between them")


def _tasks_held(port: int) -> set[str]:
    """The tasks a worker's /metrics shows it holds (its ``task_<p>`` table entries)."""
    _status, text = http(port, "/metrics")
    found = re.findall(r'^marketban_table_entries\{table="(task_\d+)"\}', str(text), re.MULTILINE)
    return set(found)


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


def through_worker(env: dict[str, str], lines: Path, tmp_path: Path) -> tuple[bytes, str]:
    """Feed a replay-format file to a fresh worker; its outputs (``tail``) and its log."""
    env = worker_env(env, tmp_path / "data")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        cli(env, "feed", str(lines))
        streamed = cli(env, "tail", "--idle", "3")
    finally:
        worker.stop()
    return streamed, worker.log()


def banned_accounts(env: dict[str, str], tmp_path: Path, persons: int) -> tuple[Path, list[str]]:
    """A synthetic market's reference data file, and its banned persons' own (SP…) accounts."""
    lines = cli(env, "synth", "--orders", "0", "--banned-persons", str(persons))
    path = tmp_path / "reference.jsonl"
    path.write_bytes(lines)
    records = [json.loads(line) for line in lines.splitlines()]
    accounts = [
        r["key"]
        for r in records
        if r["topic"] == "accounts" and r["value"]["person_id"].startswith("SP")
    ]
    return path, accounts


def buy_order(order_id: str, account: str) -> dict[str, Any]:
    """An order that a banned account's ban blocks (a buy on an ordinary trading morning)."""
    return {
        "order_id": order_id, "account_id": account, "exchange": "XSHG", "security": "600000",
        "side": "buy", "quantity": 100, "price": "10.50",
        "entered_at": "2024-06-03T10:00:00+08:00", "broker": "B001",
    }  # fmt: skip


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


async def decision_counts(bootstrap: str, prefix: str) -> dict[str, int]:
    """The committed decision-counts records of the worker group, added up by verdict."""
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    name = settings.decision_counts_topic.removeprefix(prefix)
    records, _ = await read_topics(settings, (name,), idle_s=5)
    totals: dict[str, int] = {}
    for rec in records:
        for verdict, count in json.loads(rec.value or b"{}").items():
            totals[verdict] = totals.get(verdict, 0) + count
    return totals


async def wait_caught_up(bootstrap: str, prefix: str, within_s: float = 120) -> None:
    """Wait until the worker group has committed every input record (lag 0)."""
    topics = [f"{prefix}{t}" for t in INPUTS]
    await caught_up({"bootstrap_servers": bootstrap}, f"{prefix}worker", topics, within_s)
