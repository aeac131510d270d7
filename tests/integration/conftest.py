"""Fixtures for tests on a real Kafka broker.

The broker is MARKETBAN_KAFKA_BOOTSTRAP when set (``make test`` sets it to the broker it started),
else the local one on MARKETBAN_KAFKA_PORT. No broker is a failure, never a skip: a skipped
integration test proves nothing.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from marketban.adapters.kafka_admin import wait_for_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The bootstrap address of a broker that answered a metadata request."""
    bootstrap = os.environ.get("MARKETBAN_KAFKA_BOOTSTRAP") or (
        f"127.0.0.1:{os.environ.get('MARKETBAN_KAFKA_PORT', '9092')}"
    )
    try:
        asyncio.run(wait_for_cluster({"bootstrap_servers": bootstrap}, wait_s=30))
    except TimeoutError as exc:
        pytest.fail(f"no Kafka broker at {bootstrap} ({exc}); run `make kafka-up` or `make test`")
    return bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix, so each test has topics, groups and changelogs of its own."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_env(kafka_bootstrap: str, topic_prefix: str) -> dict[str, str]:
    """Environment for a subprocess (worker, CLI) pointed at the test broker and prefix."""
    env = dict(os.environ)
    env["MARKETBAN_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env["MARKETBAN_TOPIC_PREFIX"] = topic_prefix
    return env


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tail of every worker log of a failed test to its report (CI keeps only that)."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp_path, Path):
        for log in sorted(tmp_path.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            report.sections.append(
                (f"worker log {log.name} (last 60 lines)", "\n".join(lines[-60:]))
            )
