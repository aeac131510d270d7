"""Who holds a bearer token: analysts' own tokens from a file, or the one-person token.

The file (``MARKETBAN_API_TOKENS_FILE``) has one ``<sha256 hex of the token> <analyst name>`` per
line (``#`` starts a comment). Only hashes are stored, so the file reveals no token. It is
re-read when its modification time or size changes: a token added or revoked there takes effect
on the next request, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: The analyst name of ``MARKETBAN_API_TOKEN`` (a one-person setup).
OPERATOR = "operator"
_SHA256_HEX = 64


class Analysts:
    """Maps a presented token to the analyst it belongs to."""

    def __init__(self, single_token: str, tokens_file: Path | None) -> None:
        self._single = single_token.encode()
        self._file = tokens_file
        self._seen: tuple[int, int] | None = None
        self._by_hash: dict[str, str] = {}

    @property
    def configured(self) -> bool:
        """Whether any token can be valid."""
        return bool(self._single) or self._file is not None

    def analyst(self, token: str) -> str | None:
        """The analyst whose token this is, or None for an unknown or revoked token."""
        if self._single and hmac.compare_digest(token.encode(), self._single):
            return OPERATOR
        if self._file is None:
            return None
        self._reload()
        digest = hashlib.sha256(token.encode()).hexdigest()
        for known, name in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return name
        return None

    def _reload(self) -> None:
        assert self._file is not None  # noqa: S101 - checked by the caller
        try:
            stat = self._file.stat()
        except OSError as exc:
            if self._by_hash:
                log.warning("API tokens file unreadable (%s): no analyst token is valid", exc)
            self._by_hash, self._seen = {}, None
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        self._seen = seen
        self._by_hash = parse_tokens(self._file.read_text(encoding="utf-8"))
        log.info("API tokens file read: %d analyst tokens", len(self._by_hash))


def parse_tokens(text: str) -> dict[str, str]:
    """``sha256-hex -> analyst`` of a tokens file; malformed lines are skipped with a warning."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        digest, _, name = line.partition(" ")
        digest, name = digest.strip().lower(), name.strip()
        if (
            len(digest) != _SHA256_HEX
            or any(c not in "0123456789abcdef" for c in digest)
            or not name
        ):
            log.warning("API tokens file line %d is not '<sha256 hex> <analyst name>'", number)
            continue
        out[digest] = name
    return out
