"""docker-compose.yml and deploy/Dockerfile cannot run here (no Docker engine): check shape."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from marketban.cli import build_parser

ROOT = Path(__file__).parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def pinned_kafka_version() -> str:
    pom = (ROOT / "deploy" / "local-kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match
    return match.group(1)


def test_compose_runs_kafka_in_kraft_mode_with_the_pinned_version() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{pinned_kafka_version()}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in kafka


def test_compose_sets_up_topics_before_the_worker_starts() -> None:
    services = compose()["services"]
    assert services["topics"]["command"] == ["topics"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert worker["environment"]["MARKETBAN_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert any("/var/lib/marketban" in v for v in worker["volumes"])
    assert services["topics"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "demo" in services["demo"]["profiles"]


def test_compose_commands_are_real_marketban_commands() -> None:
    parser = build_parser()
    for name, service in compose()["services"].items():
        if "command" in service and name != "kafka":
            parser.parse_args(service["command"])  # exits on an unknown command


def test_dockerfile_installs_pinned_deps_and_runs_the_worker_unprivileged() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    assert "-c requirements/constraints.txt" in text
    assert re.search(r"^USER marketban$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["marketban"]' in text
    assert 'CMD ["worker"]' in text
    assert "EXPOSE 6066" in text
