"""``marketban replay`` (spec R7): JSON lines in, the engine's outputs as JSON lines out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any, NamedTuple

import orjson
from msgspec import Struct
from pydantic import BaseModel

from marketban.domain.engine import (
    INTERNAL_OUTPUTS,
    Engine,
    Output,
    Payload,
    Source,
    rejected_output,
)
from marketban.domain.fastpath import json_bytes
from marketban.domain.models import INPUT_TOPICS


class LineInput(NamedTuple):
    """The message a replay line carries."""

    topic: str
    key: str | None
    payload: Payload


def encode_output(topic: str, key: str | None, value: BaseModel | Struct) -> bytes:
    """One output record as a replay-format JSON line (with the newline)."""
    return orjson.dumps(
        {"topic": topic, "key": key, "value": orjson.Fragment(json_bytes(value))},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def _line_rejected(number: int, raw: Payload, topic: str, key: str | None, error: str) -> Output:
    return rejected_output(Source(topic=topic, line=number), key, raw, f"line {number}: {error}")


def read_line(number: int, line: bytes) -> LineInput | Output:
    """The (topic, key, payload) a replay line carries, or the rejection it earns."""
    try:
        record: Any = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return _line_rejected(number, line, "replay", None, f"not a JSON line: {exc}")
    if not isinstance(record, dict):
        return _line_rejected(number, line, "replay", None, "a replay line must be a JSON object")
    topic, key = record.get("topic"), record.get("key")
    if not isinstance(topic, str) or topic not in INPUT_TOPICS:
        return _line_rejected(
            number,
            line,
            str(topic),
            None,
            f"unknown topic {topic!r}; input topics are {', '.join(INPUT_TOPICS)}",
        )
    if key is not None and not isinstance(key, str):
        return _line_rejected(number, line, topic, None, f"key must be a string, got {key!r}")
    if "raw" in record:
        raw = record["raw"]
        if not isinstance(raw, str):
            return _line_rejected(number, line, topic, key, "raw must be a string")
        return LineInput(topic, key, raw.encode("utf-8", errors="surrogatepass"))
    value = record.get("value")
    # A non-object value goes on as JSON text, so the engine rejects it as it would on Kafka.
    return LineInput(topic, key, value if isinstance(value, dict) else orjson.dumps(value))


def replay(engine: Engine, lines: Iterable[bytes], out: IO[bytes]) -> int:
    """Feed every line to the engine in order, writing outputs as they are produced."""
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines carry no message
        read = read_line(number, line)
        if isinstance(read, LineInput):
            source = Source(topic=read.topic, line=number)
            outputs = engine.run(read.topic, read.key, read.payload, source)
        else:
            outputs = [read]
        for topic_out, key_out, value in outputs:
            if topic_out not in INTERNAL_OUTPUTS:
                out.write(encode_output(topic_out, key_out, value))
        count += 1
    return count
