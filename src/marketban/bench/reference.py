"""``marketban bench reference``: loading reference data at a broker's size, and restarts.

10,000 banned persons and 1,000,000 linked accounts by default (the banned persons' 30,000 and
970,000 accounts of persons without a ban), fed to a worker on fresh topics the way a user
loads such a file: ``marketban feed --no-wait``. Measured: records/s from the first produce until
the worker's group has committed all of them, the worker's peak memory, and the time until
``/health/ready`` of a restart with its store intact and of one with its store deleted (rebuilt
from the changelog).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from marketban.adapters.feed_tail import feed
from marketban.adapters.kafka_admin import wait_caught_up
from marketban.adapters.processes import Child, free_port, peak_rss_mb, wait_ready
from marketban.domain.models import INPUT_TOPICS
from marketban.settings import Settings

_CLI = ["-m", "marketban.cli"]


def _lines(banned: int, accounts: int) -> list[bytes]:
    """The reference data as replay lines, the file a user would ``marketban feed``."""
    out: list[bytes] = []
    for p in range(banned):
        did = f"CSRC-REF-{p:05d}"
        ban = {
            "decision_id": did, "version": 1, "action": "issue", "issuer": "CSRC",
            "person_id": f"RP{p:07d}", "person_name": "合成", "served_on": "2024-05-10",
            "measures": [{"kind": "trading", "years": 5}], "violation_ended_on": "2023-11-30",
            "mitigated": False, "effective_on": None,
        }  # fmt: skip
        out.append(orjson.dumps({"topic": "bans", "key": did, "value": ban}))
    for a in range(accounts):
        person = a // 3 if a < banned * 3 else banned + a
        account = f"RA{a:09d}"
        link = {"account_id": account, "person_id": f"RP{person:07d}", "kind": "cash"}
        out.append(orjson.dumps({"topic": "accounts", "key": account, "value": link}))
    return out


def _ready_in(env: dict[str, str], log: Path, port: int) -> tuple[Child, float]:
    started = time.perf_counter()
    child = Child([*_CLI, "worker"], env, log).start()
    wait_ready(child, port, 600)
    return child, round(time.perf_counter() - started, 1)


async def bench_reference(settings: Settings, banned: int, accounts: int) -> dict[str, Any]:
    """Load the reference data into a fresh worker, then restart it twice; the figures."""
    prefix = f"bench-ref-{uuid.uuid4().hex[:8]}."
    s = settings.model_copy(update={"topic_prefix": prefix})
    workdir = Path(tempfile.mkdtemp(prefix="marketban-bench-ref-"))
    port = free_port()
    env = {
        **os.environ,
        "MARKETBAN_TOPIC_PREFIX": prefix,
        "MARKETBAN_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "MARKETBAN_DATA_DIR": str(workdir / "data"),
        "MARKETBAN_WEB_PORT": str(port),
        "MARKETBAN_LOG_LEVEL": "WARNING",
    }
    lines = _lines(banned, accounts)
    result: dict[str, Any] = {"bench": "reference", "records": len(lines)}
    worker, result["first_start_s"] = await asyncio.to_thread(
        _ready_in, env, workdir / "worker.log", port
    )
    try:
        started = time.perf_counter()
        # What `marketban feed --no-wait` does with such a file.
        await feed(s, lines, 0, io.StringIO(), wait=False)
        produced = time.perf_counter() - started
        topics = [s.topic(t) for t in INPUT_TOPICS]
        await wait_caught_up(s.kafka(), s.app_id, topics, 1800)
        loaded = time.perf_counter() - started
        result["produce_per_s"] = round(len(lines) / produced)
        result["load_per_s"] = round(len(lines) / loaded)
        result["worker_peak_rss_mb"] = peak_rss_mb(worker.proc.pid) if worker.proc else None
        worker.stop()
        worker, result["restart_store_intact_s"] = await asyncio.to_thread(
            _ready_in, env, workdir / "restart.log", port
        )
        worker.stop()
        shutil.rmtree(workdir / "data")
        worker, result["restart_store_deleted_s"] = await asyncio.to_thread(
            _ready_in, env, workdir / "rebuild.log", port
        )
        result["rebuilt_peak_rss_mb"] = peak_rss_mb(worker.proc.pid) if worker.proc else None
    finally:
        worker.stop()
        shutil.rmtree(workdir / "data", ignore_errors=True)
    result["logs"] = str(workdir)
    return result
