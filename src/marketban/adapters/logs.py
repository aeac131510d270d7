"""Structured logs: one JSON object per line, for the worker and every command.

What marketban logs never carries a person's name or identity number: its own messages name
topics, partitions and offsets, and the error handlers log exception types, not record contents
(docs/operations.md). The tests read worker logs to hold that.
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg"}`` plus ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """One log record as a JSON line."""
        entry: dict[str, Any] = {
            # the record's own creation time, as logging stamps it; not a decision input
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class ClusterAwayFilter(logging.Filter):
    """aiokafka's own traceback for a producer that lost the cluster, as one warning line.

    When the broker goes away in the middle of a transaction, aiokafka's sender task ends with
    ``log.exception("Unexpected error in sender routine")`` and a chain of connection errors. The
    decider handles what follows (the task reopens from its committed state); a traceback there
    reads like a crash to an operator and says nothing more than the line does.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite such a record in place; let every record through."""
        if record.name == "aiokafka.producer.sender" and record.exc_info:
            exc = record.exc_info[1]
            lost = _connection_lost(exc) if exc is not None else None
            if lost is not None:
                record.msg = f"{record.getMessage()}: {lost!r} (the cluster is away; retried)"
                record.args = None
                record.exc_info = record.exc_text = None
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class ProduceRetrySummary(logging.Filter):
    """aiokafka's line per retried produce batch, as one summary a minute with counts by error.

    aiokafka warns once per batch it retries. From a Kafka 3.6+ broker most of those are
    ``NotEnoughReplicasError``: the broker verifies that a transactional producer added the
    partition to its transaction (KIP-890), and to a client that predates KIP-890 (aiokafka
    does) it reports a verification that could not complete yet as that retriable error. A
    worker at a few thousand orders/s logs dozens a second, each of which reads like an
    under-replicated cluster. The first retry is logged as it is; after it, retries are counted,
    and the first retry at least ``every_s`` seconds (of log time) after the last line logged
    becomes a line with the counts by error since then (docs/operations.md). A retry that never
    succeeds fails its transaction, which the decider logs and handles itself.
    """

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._since: float | None = None  # log time of the last line let through
        self._counts: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Let the first retry through, count the next, turn one into a summary per interval."""
        if record.name != "aiokafka.producer.sender" or record.msg != _PRODUCE_RETRY:
            return True
        if self._since is None:
            self._since = record.created
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        error = _error_name(args[1]) if len(args) > 1 else "unknown"
        self._counts[error] = self._counts.get(error, 0) + 1
        elapsed = record.created - self._since
        if elapsed < self._every_s:
            return False
        counts = ", ".join(f"{name} {n}" for name, n in sorted(self._counts.items()))
        record.msg = (
            f"produce batch retries in the last {elapsed:.0f} s: {sum(self._counts.values())} "
            f"({counts}); NotEnoughReplicasError from a Kafka 3.6+ broker is mostly its "
            "transaction verification (KIP-890), see docs/operations.md"
        )
        record.args = None
        self._since, self._counts = record.created, {}
        return True


#: aiokafka's message for a produce batch it retries (``aiokafka.producer.sender``).
_PRODUCE_RETRY = "Got error produce response on topic-partition %s, retrying. Error: %s"


def _error_name(error: object) -> str:
    """An aiokafka error class or instance as its bare name; the broker's message as it is."""
    if isinstance(error, str):
        return error[:120]
    kind = error if isinstance(error, type) else type(error)
    return kind.__name__


def _connection_lost(exc: BaseException) -> BaseException | None:
    """The lost connection somewhere in ``exc``'s chain of causes, or None."""
    from aiokafka.errors import KafkaConnectionError  # noqa: PLC0415 - on the error path only

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaConnectionError | ConnectionError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: JSON lines on standard error at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {
            "cluster_away": {"()": ClusterAwayFilter},
            "produce_retries": {"()": ProduceRetrySummary},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["cluster_away", "produce_retries"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }
