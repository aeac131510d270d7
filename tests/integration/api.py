"""Helpers for tests of the worker's web API: HTTP calls and waiting for a condition."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def http(
    port: int,
    path: str,
    *,
    token: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Call the worker's web server; the status and the JSON body (or text when not JSON)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {}
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, raw, ctype = answer.status, answer.read(), answer.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        status, raw, ctype = error.code, error.read(), error.headers["Content-Type"]
    if ctype and ctype.startswith("application/json"):
        return status, json.loads(raw)
    return status, raw.decode()


def eventually(probe: Callable[[], T | None], within_s: float = 60, what: str = "") -> T:
    """The first truthy value ``probe`` returns; AssertionError after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f}s: {what}")
        time.sleep(0.3)
