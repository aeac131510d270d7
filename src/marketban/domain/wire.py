"""Decoding input payloads into models, with errors a person can act on. Pure: no I/O."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

#: Payloads larger than this are refused before parsing (a hostile or broken producer).
MAX_PAYLOAD_BYTES = 64 * 1024
#: How much of a rejected payload is copied into the rejection record.
MAX_ECHO_CHARS = 8 * 1024


class DecodeError(ValueError):
    """An input that is not a readable, valid message; ``partial`` holds what could be read."""

    def __init__(self, message: str, partial: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.partial = partial


def parse_object(payload: bytes | dict[str, Any]) -> dict[str, Any]:
    """Parse a JSON object payload (or pass an already-parsed one through)."""
    if isinstance(payload, dict):
        return payload
    if not payload:
        # A null value reaches here as b"": a tombstone, or a producer that sent the key alone.
        raise DecodeError("the message has no value (null or empty); expected a JSON object")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DecodeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def validate(model: type[M], obj: dict[str, Any]) -> M:
    """Validate a parsed object as ``model``; the error names every wrong field."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise DecodeError(describe_errors(exc), partial=obj) from None
    except RecursionError:
        raise DecodeError("message is nested too deeply", partial=None) from None


def describe_errors(exc: ValidationError) -> str:
    """One line per wrong field: ``field 'quantity': Input should be a valid integer (got '1')``."""
    parts = []
    for err in exc.errors(include_url=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        got = ""
        if err["type"] != "missing" and loc != "(message)":
            shown = repr(err.get("input"))
            got = f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"  # noqa: PLR2004
        parts.append(f"field '{loc}': {err['msg']}{got}")
    return "; ".join(parts)


def payload_text(payload: bytes | dict[str, Any]) -> tuple[str, bool]:
    """The payload as text for a rejection record, and whether it was truncated."""
    if isinstance(payload, dict):
        try:
            text = orjson.dumps(payload).decode()
        except TypeError:
            # orjson writes at most 254 levels where it reads 1024: a rejection must not fail on
            # the very input it rejects. The source partition and offset still locate it.
            text = "(nested too deeply to echo; see the source topic, partition and offset)"
    else:
        text = payload.decode("utf-8", errors="replace")
    if len(text) > MAX_ECHO_CHARS:
        return text[:MAX_ECHO_CHARS], True
    return text, False
