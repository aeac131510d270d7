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
