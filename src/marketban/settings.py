"""Configuration: one frozen settings object read from ``MARKETBAN_*`` environment variables."""

from __future__ import annotations

import ssl
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketban.domain.proxy import ProxyConfig

#: Keyword arguments for aiokafka clients (``Settings.kafka()``): the cluster and authentication.
KafkaOptions = dict[str, Any]


class Settings(BaseSettings):
    """Every setting of marketban; each field is read from ``MARKETBAN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MARKETBAN_", frozen=True, extra="ignore")

    kafka_port: int = Field(9092, ge=1, le=65535, description="port of the local dev broker")
    kafka_bootstrap: str = Field(
        "", description="Kafka bootstrap servers; empty means the local broker on kafka_port"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT (local development) or SASL_SSL"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism with SASL_SSL"
    )
    kafka_username: str = Field("", description="SASL user name (SASL_SSL)")
    kafka_password: SecretStr = Field(
        SecretStr(""), description="SASL password (SASL_SSL); never logged or printed"
    )
    kafka_ca_file: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates (SASL_SSL)"
    )
    topic_prefix: str = Field(
        "marketban.", pattern=r"^[A-Za-z0-9._-]*$", description="prefix of every Kafka name"
    )
    topic_partitions: int = Field(6, ge=1, le=1024, description="partitions of topics it creates")
    topic_replication: int = Field(1, ge=1, le=16, description="replication of topics it creates")
    web_bind: str = Field("127.0.0.1", description="address the worker's web server binds to")
    web_port: int = Field(6066, ge=1, le=65535, description="port of the worker's web server")
    data_dir: Path = Field(Path(".local/worker-data"), description="the decider's RocksDB stores")
    session_timeout: float = Field(
        10.0,
        ge=6,
        le=300,
        description="seconds before a dead worker's tasks are given to another worker",
    )
    batch_max: int = Field(
        # A backlog is decided in fewer, larger transactions (each has a fixed cost of five
        # requests and a marker per partition); at a steady rate a batch is what is ready.
        2000,
        ge=1,
        le=100_000,
        description="most input records in one task's transaction",
    )
    max_task_idle: float = Field(
        0.5,
        ge=0,
        le=60,
        description="seconds a task holds its records back for a lagging input partition that "
        "may still deliver earlier ones (then it goes on: the order is no longer guaranteed)",
    )
    decision_counts_every: float = Field(
        1.0,
        ge=0,
        le=60,
        description="seconds between a task's decision-counts records, the dashboard's totals "
        "(0: one with every transaction, which then touches one more partition)",
    )
    web_advertised_host: str = Field(
        "",
        description="host name other workers reach this one's web server at (API routing); "
        "empty means web_bind",
    )
    api_token: SecretStr = Field(
        SecretStr(""),
        description="bearer token the API's write actions require; empty disables them",
    )
    api_tokens_file: Path | None = Field(
        None,
        description="file of analysts' tokens: one 'sha256-hex-of-token analyst-name' per line; "
        "re-read when it changes (no restart)",
    )
    api_read_token_required: bool = Field(
        default=True,
        description="whether reads that show accounts, persons, violations or terminals need a "
        "token (the register /api/bans stays public); false is the explicit opt-out",
    )
    proxy_window: int = Field(
        20, ge=0, le=250, description="R8: trading sessions either way in which two uses pair"
    )
    proxy_shared_limit: int = Field(
        5,
        ge=1,
        le=1000,
        description="R8: a terminal used by more distinct persons within one window is shared "
        "equipment and raises no suspicion",
    )
    violations_kept: int = Field(
        100_000, ge=100, le=10_000_000, description="newest violations each worker keeps to query"
    )
    log_level: str = Field("INFO", description="worker log level")
    holidays_file: Path | None = Field(
        None, description="JSON file of published holidays for years the calendars do not know"
    )

    @model_validator(mode="after")
    def _default_bootstrap(self) -> Settings:
        if not self.kafka_bootstrap:
            # Frozen model: set the derived default once, during validation.
            object.__setattr__(self, "kafka_bootstrap", f"127.0.0.1:{self.kafka_port}")
        if self.kafka_security_protocol == "SASL_SSL" and not (
            self.kafka_username and self.kafka_password.get_secret_value()
        ):
            raise ValueError(
                "MARKETBAN_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs MARKETBAN_KAFKA_USERNAME and "
                "MARKETBAN_KAFKA_PASSWORD"
            )
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SASL_SSL (system CAs, or only ``kafka_ca_file``); None otherwise."""
        if self.kafka_security_protocol != "SASL_SSL":
            return None
        cafile = str(self.kafka_ca_file) if self.kafka_ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def kafka(self, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - aiokafka's keyword arguments
        """Keyword arguments for every aiokafka client: the cluster, and how to authenticate."""
        options: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap}
        if self.kafka_security_protocol == "SASL_SSL":
            options.update(
                security_protocol="SASL_SSL",
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_username,
                sasl_plain_password=self.kafka_password.get_secret_value(),
                ssl_context=self.ssl_context(),
            )
        options.update(extra)
        return options

    def topic(self, name: str) -> str:
        """Return the full Kafka topic name for a spec topic name (``orders`` -> prefix+orders)."""
        return f"{self.topic_prefix}{name}"

    @property
    def dispositions_topic(self) -> str:
        """Where analysts' dispositions of violations are recorded (the audit trail)."""
        return self.topic("violation-dispositions")

    @property
    def ban_windows_topic(self) -> str:
        """The internal compacted topic every worker reads the ban view from."""
        return f"{self.app_id}-ban-windows"

    @property
    def changelog_topic(self) -> str:
        """The compacted topic of the decider's task state (partition p: task p)."""
        return f"{self.app_id}-state-changelog"

    @property
    def decision_counts_topic(self) -> str:
        """Decisions by verdict, one record per task and batch: what dashboards count from."""
        return f"{self.app_id}-decision-counts"

    @property
    def ticks_topic(self) -> str:
        """Where the decider appends a tick to have its fetch answered at once (never read)."""
        return f"{self.app_id}-ticks"

    @property
    def terminal_uses_topic(self) -> str:
        """R8's re-keying: each order's use of its terminal, keyed by the terminal."""
        return f"{self.app_id}-terminal-uses"

    @property
    def proxy_suspicions_topic(self) -> str:
        """R8's suspicions on their way back to the account they name (emitted once there)."""
        return f"{self.app_id}-proxy-suspicions"

    @property
    def routed_topics(self) -> dict[str, str]:
        """R8's internal hops (``engine.ROUTED``): the engine's name -> full topic name."""
        return {
            "terminal-uses": self.terminal_uses_topic,
            "proxy-suspicions": self.proxy_suspicions_topic,
        }

    @property
    def web_url(self) -> str:
        """The URL other workers reach this worker's web server at (API routing)."""
        return f"http://{self.web_advertised_host or self.web_bind}:{self.web_port}"

    @cached_property
    def app_id(self) -> str:
        """The decider's consumer group, and the prefix of its transactional ids and own topics."""
        return f"{self.topic_prefix}worker"


def proxy_config(settings: Settings) -> ProxyConfig:
    """R8's parameters, as the engine takes them."""
    return ProxyConfig(window=settings.proxy_window, shared_limit=settings.proxy_shared_limit)
