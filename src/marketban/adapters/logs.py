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
        "filters": {"cluster_away": {"()": ClusterAwayFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["cluster_away"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }
