from __future__ import annotations

import pydantic
import pytest

from marketban.settings import Settings


def test_every_kafka_name_derives_from_the_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETBAN_TOPIC_PREFIX", "blue.")
    s = Settings()
    assert s.topic("orders") == "blue.orders"
    assert s.app_id == "blue.worker"


def test_bootstrap_defaults_to_the_local_broker_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKETBAN_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("MARKETBAN_KAFKA_PORT", "19092")
    assert Settings().kafka_bootstrap == "127.0.0.1:19092"


def test_explicit_bootstrap_wins_over_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETBAN_KAFKA_BOOTSTRAP", "kafka-1:9093,kafka-2:9093")
    assert Settings().kafka_bootstrap == "kafka-1:9093,kafka-2:9093"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.topic_prefix = "other."  # type: ignore[misc]


def test_web_server_binds_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKETBAN_WEB_BIND", raising=False)
    assert Settings().web_bind == "127.0.0.1"


@pytest.mark.parametrize("prefix", ["bad prefix", "a/b", "ü."])
def test_a_prefix_kafka_cannot_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("MARKETBAN_TOPIC_PREFIX", prefix)
    with pytest.raises(pydantic.ValidationError, match="topic_prefix"):
        Settings()


def test_sasl_ssl_needs_a_user_and_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETBAN_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("MARKETBAN_KAFKA_PASSWORD", raising=False)
    with pytest.raises(pydantic.ValidationError, match="MARKETBAN_KAFKA_PASSWORD"):
        Settings()


def test_every_kafka_client_gets_the_credentials_and_the_password_stays_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MARKETBAN_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MARKETBAN_KAFKA_USERNAME", "gateway")
    monkeypatch.setenv("MARKETBAN_KAFKA_PASSWORD", "s3cret-value")
    s = Settings()
    options = s.kafka(acks="all")
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "gateway",
        "s3cret-value",
    )
    assert options["ssl_context"] is not None
    assert options["acks"] == "all"
    assert "s3cret-value" not in repr(s)
    assert "s3cret-value" not in str(s.model_dump())


def test_plaintext_clients_get_only_the_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKETBAN_KAFKA_SECURITY_PROTOCOL", raising=False)
    monkeypatch.setenv("MARKETBAN_KAFKA_BOOTSTRAP", "k:9092")
    assert Settings().kafka() == {"bootstrap_servers": "k:9092"}
