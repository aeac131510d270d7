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


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: JSON lines on standard error at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }
