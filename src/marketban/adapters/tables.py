"""Faust tables seen as the engine's mappings: pydantic values stored as JSON bytes.

Faust's own codecs for dict/bool values broke decoding and recovery in faust-streaming 0.15.3
(see the stream issue), so tables hold raw bytes and this wrapper owns the encoding.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from marketban.domain.fastpath import json_bytes

M = TypeVar("M", bound=BaseModel)


class ModelTable(MutableMapping[str, M], Generic[M]):
    """A MutableMapping[str, model] over a Faust table of bytes -> bytes."""

    def __init__(self, table: Any, model: type[M]) -> None:  # noqa: ANN401 - faust is untyped
        self._table = table
        self._model = model

    def __getitem__(self, key: str) -> M:
        raw = self._table.get(key.encode())
        if raw is None:
            raise KeyError(key)
        return self._model.model_validate_json(raw)

    def get(self, key: str, default: Any = None) -> Any:  # noqa: ANN401 - Mapping's signature
        """The decoded value, or ``default`` (no decode work for missing keys: the hot path)."""
        raw = self._table.get(key.encode())
        return default if raw is None else self._model.model_validate_json(raw)

    def __setitem__(self, key: str, value: M) -> None:
        # Assignment is what makes Faust write the changelog, so the engine always writes back.
        self._table[key.encode()] = json_bytes(value)

    def __delitem__(self, key: str) -> None:
        del self._table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self._table)

    def __len__(self) -> int:
        return len(self._table)
