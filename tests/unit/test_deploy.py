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


# ---- Kubernetes and Prometheus (deploy/k8s, deploy/prometheus) ------------------------------


def k8s() -> dict[str, dict]:
    docs = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "marketban.yaml").read_text())
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def statefulset() -> dict:
    return k8s()["StatefulSet/marketban"]


def worker_container() -> dict:
    (container,) = statefulset()["spec"]["template"]["spec"]["containers"]
    return container


def test_statefulset_has_stable_names_persistent_tables_and_readiness_on_recovery() -> None:
    docs = k8s()
    sts = statefulset()
    headless = docs[f"Service/{sts['spec']['serviceName']}"]
    assert headless["spec"]["clusterIP"] == "None"
    assert sts["spec"]["replicas"] >= 2
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert headless["spec"]["selector"].items() <= labels.items()
    assert docs["Service/marketban"]["spec"]["selector"].items() <= labels.items()
    container = worker_container()
    assert container["args"] == ["worker"]
    (port,) = container["ports"]  # one web port: API, dashboard, metrics and health
    config = docs["ConfigMap/marketban"]["data"]
    assert port["containerPort"] == int(config["MARKETBAN_WEB_PORT"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == config["MARKETBAN_DATA_DIR"]
    assert config["MARKETBAN_WEB_BIND"] == "0.0.0.0"  # noqa: S104 - inside the pod


def test_each_worker_advertises_its_own_pod_name_for_api_routing() -> None:
    env = {e["name"]: e for e in worker_container()["env"]}
    host = env["MARKETBAN_WEB_ADVERTISED_HOST"]["value"]
    assert host.startswith(f"$(POD_NAME).{statefulset()['spec']['serviceName']}.")
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_secrets_come_from_a_secret_and_every_setting_is_a_real_one() -> None:
    from marketban.settings import Settings  # noqa: PLC0415

    fields = {f"MARKETBAN_{name.upper()}" for name in Settings.model_fields}
    env = {e["name"]: e for e in worker_container()["env"]}
    for secret in ("MARKETBAN_API_TOKEN", "MARKETBAN_KAFKA_PASSWORD"):
        assert "secretKeyRef" in env[secret]["valueFrom"]
        assert secret not in k8s()["ConfigMap/marketban"]["data"]
    named = set(k8s()["ConfigMap/marketban"]["data"]) | {
        n for n in env if n.startswith("MARKETBAN_")
    }
    assert named <= fields, named - fields
    worker_env = compose()["services"]["worker"]["environment"]
    assert {n for n in worker_env if n.startswith("MARKETBAN_")} <= fields


def prometheus(name: str) -> dict:
    return yaml.safe_load((ROOT / "deploy" / "prometheus" / name).read_text())


def test_prometheus_scrapes_the_worker_pods_metrics() -> None:
    config = prometheus("prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    k8s_job = jobs["marketban-k8s"]
    assert k8s_job["metrics_path"] == "/metrics"
    assert k8s_job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = [r for r in k8s_job["relabel_configs"] if r.get("action") == "keep"]
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert keep[0]["regex"] == labels["app.kubernetes.io/name"]
    assert keep[1]["regex"] == worker_container()["ports"][0]["name"]
    assert jobs["marketban-local"]["static_configs"][0]["targets"] == ["127.0.0.1:6066"]


def test_alerts_use_only_metrics_the_worker_exposes() -> None:
    from marketban.adapters.metrics import Metrics  # noqa: PLC0415
    from marketban.domain.engine import Source  # noqa: PLC0415
    from tests.unit.helpers import (  # noqa: PLC0415
        DeciderHealthStub,
        ban,
        feed,
        link,
        new_engine,
        order,
    )

    engine = new_engine()
    outputs = feed(engine, ("bans", ban()), ("accounts", link()), ("orders", order("O1")))
    outputs += engine.handle("orders", "A1", b"{", Source("orders"))
    metrics = Metrics(lambda: {"accounts": 0}, lambda: {("t", 0): 0})
    # A labelled metric shows once it has a sample.
    metrics.watch(DeciderHealthStub(hanging={0: 1}, layout_errors={"t": 4}))
    metrics.count(outputs, "orders")
    exposed = metrics.exposition().decode()
    names = {line.split("{")[0].split(" ")[0] for line in exposed.splitlines() if line[:1] != "#"}
    (group,) = prometheus("alerts.yml")["groups"]
    for rule in group["rules"]:
        assert {"alert", "expr", "labels", "annotations"} <= rule.keys()
        for metric in re.findall(r"\bmarketban_[a-z_]+", rule["expr"]):
            assert metric in names, (
                f"{rule['alert']} uses {metric}, which the worker does not expose"
            )


def test_aiokafkas_traceback_for_a_lost_cluster_becomes_one_warning_line() -> None:
    import logging  # noqa: PLC0415

    from aiokafka.errors import KafkaConnectionError, KafkaError  # noqa: PLC0415

    from marketban.adapters.logs import ClusterAwayFilter, JsonFormatter  # noqa: PLC0415

    failure = KafkaError("coordinator lookup failed")
    failure.__cause__ = KafkaConnectionError("Connection at 127.0.0.1:9092 closed")
    exc_info = (KafkaError, failure, None)
    record = logging.LogRecord(
        "aiokafka.producer.sender", logging.ERROR, __file__, 1,
        "Unexpected error in sender routine", None, exc_info,
    )  # fmt: skip
    assert ClusterAwayFilter().filter(record)
    line = JsonFormatter().format(record)
    assert '"exc"' not in line
    assert '"level":"WARNING"' in line
    assert "Connection at 127.0.0.1:9092 closed" in line
    other = logging.LogRecord(
        "marketban.decider", logging.ERROR, __file__, 1, "boom", None, exc_info
    )
    ClusterAwayFilter().filter(other)
    assert '"exc"' in JsonFormatter().format(other)  # our own errors keep their traceback


def test_aiokafkas_produce_retry_warnings_become_one_counted_line_a_minute() -> None:
    import logging  # noqa: PLC0415

    from aiokafka.errors import NotEnoughReplicasError, RequestTimedOutError  # noqa: PLC0415

    from marketban.adapters.logs import JsonFormatter, ProduceRetrySummary  # noqa: PLC0415

    template = "Got error produce response on topic-partition %s, retrying. Error: %s"

    def retry(at: float, error: object) -> logging.LogRecord:
        record = logging.LogRecord(
            "aiokafka.producer.sender", logging.WARNING, __file__, 1,
            template, ("TopicPartition(topic='decisions', partition=3)", error), None,
        )  # fmt: skip
        record.created = at
        return record

    summary = ProduceRetrySummary(every_s=60)
    first = retry(1000.0, NotEnoughReplicasError)
    assert summary.filter(first)  # the first one as aiokafka wrote it
    assert "partition=3" in first.getMessage()
    quiet = [retry(1000.0 + i, NotEnoughReplicasError) for i in range(1, 40)]
    quiet.append(retry(1045.0, RequestTimedOutError))
    assert not any(summary.filter(r) for r in quiet)
    due = retry(1061.0, NotEnoughReplicasError)
    assert summary.filter(due)
    line = JsonFormatter().format(due)
    assert "produce batch retries in the last 61 s: 41" in line
    assert "NotEnoughReplicasError 40, RequestTimedOutError 1" in line
    assert '"level":"WARNING"' in line
    assert not summary.filter(retry(1062.0, NotEnoughReplicasError))  # counting anew
    other = logging.LogRecord(
        "aiokafka.producer.sender", logging.WARNING, __file__, 1,
        "Got error produce response: %s", ("boom",), None,
    )  # fmt: skip
    assert summary.filter(other)  # aiokafka's other warnings pass untouched
