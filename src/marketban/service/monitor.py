"""What the analysts' dashboard watches: violations with their dispositions, and counts over time.

Fed from the ``violations`` and ``violation-dispositions`` topics and the decider's decision
counts (every worker follows them, read_committed), so any worker answers for the whole
cluster. Pure: the caller passes each record and its broker timestamp; listeners hear of each
new or changed violation.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Literal

import msgspec
from pydantic import BaseModel, Field

from marketban.domain.models import Text, Violation
from marketban.service.queries import Page, page_of

#: Counts are kept per minute for this many minutes (one day).
MINUTES_KEPT = 24 * 60


DispositionStatus = Literal["acknowledged", "confirmed", "dismissed"]


class DispositionRequest(BaseModel):
    """What an analyst sends with a disposition (who sent it is the token's analyst)."""

    note: str = Field("", max_length=2000, description="why, in the analyst's words")


class Disposition(BaseModel):
    """An analyst's disposition of a violation: one record on ``violation-dispositions``."""

    violation_id: Text
    status: DispositionStatus = "acknowledged"
    note: str = Field("", max_length=2000)
    by: str = Field("", max_length=128, description="the analyst of the token used")
    at: datetime


class ViolationEntry(BaseModel):
    """A violation as the dashboard shows it: the record and its latest disposition."""

    violation: Violation
    disposition: Disposition | None = None


_counts_decoder = msgspec.json.Decoder(dict[str, int])


class Tally:
    """Decisions by verdict and violations by kind, per minute of broker time."""

    def __init__(self, minutes: int = MINUTES_KEPT) -> None:
        self._minutes = minutes
        self._buckets: OrderedDict[int, dict[str, int]] = OrderedDict()
        self.totals: defaultdict[str, int] = defaultdict(int)

    def add(self, name: str, timestamp_ms: int, count: int = 1) -> None:
        """Count ``count`` of ``name`` (e.g. ``verdict:block``) at a broker timestamp."""
        minute = timestamp_ms // 60_000
        bucket = self._buckets.get(minute)
        if bucket is None:
            newest = next(reversed(self._buckets), None)
            bucket = self._buckets[minute] = {}
            if newest is not None and minute < newest:  # a late record: keep minutes in order
                self._buckets = OrderedDict(sorted(self._buckets.items()))
            while len(self._buckets) > self._minutes:
                self._buckets.popitem(last=False)
        bucket[name] = bucket.get(name, 0) + count
        self.totals[name] += count

    def series(self, last: int) -> list[dict[str, int | str]]:
        """The last ``last`` minutes that have counts, oldest first, each with its minute."""
        minutes = list(self._buckets.items())[-last:]
        return [
            {"minute": datetime.fromtimestamp(m * 60, UTC).isoformat(), **counts}
            for m, counts in minutes
        ]


class ViolationLog:
    """The newest violations (at most ``capacity``), their dispositions, and the tally."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, ViolationEntry] = OrderedDict()
        self._dispositions: dict[str, Disposition] = {}
        self.tally = Tally()
        self.listeners: list[Callable[[ViolationEntry], None]] = []

    def on_counts(self, value: bytes, timestamp_ms: int) -> None:
        """Add one record of the decision counts (a task's batch: verdict name -> decisions)."""
        try:
            counts = _counts_decoder.decode(value)
        except msgspec.DecodeError:
            return  # the worker writes these; a foreign record is not ours to count
        for name, count in counts.items():
            if name.startswith("verdict:") and count > 0:
                self.tally.add(name, timestamp_ms, count)

    def on_violation(self, value: bytes, timestamp_ms: int) -> None:
        """Add one record of the ``violations`` topic (a repeat of an id changes nothing)."""
        violation = Violation.model_validate_json(value)
        if violation.violation_id in self._entries:
            return
        self.tally.add(f"kind:{violation.kind}", timestamp_ms)
        entry = ViolationEntry(
            violation=violation, disposition=self._dispositions.get(violation.violation_id)
        )
        self._entries[violation.violation_id] = entry
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        self._tell(entry)

    def on_disposition(self, value: bytes) -> None:
        """Apply one record of ``violation-dispositions`` (the latest one wins)."""
        disposition = Disposition.model_validate_json(value)
        self._dispositions[disposition.violation_id] = disposition
        entry = self._entries.get(disposition.violation_id)
        if entry is not None:
            entry.disposition = disposition
            self._tell(entry)

    def _tell(self, entry: ViolationEntry) -> None:
        for listener in self.listeners:
            listener(entry)

    def get(self, violation_id: str) -> ViolationEntry | None:
        """One violation by id, if it is among those kept."""
        return self._entries.get(violation_id)

    def page(
        self,
        offset: int,
        limit: int,
        *,
        kind: str | None = None,
        broker: str | None = None,
        session: date | None = None,
        account_id: str | None = None,
    ) -> Page[ViolationEntry]:
        """Violations newest first, filtered by kind, broker, session and account."""
        chosen = [
            e
            for e in reversed(self._entries.values())
            if (kind is None or e.violation.kind == kind)
            and (broker is None or e.violation.broker == broker)
            and (session is None or e.violation.session == session)
            and (account_id is None or e.violation.account_id == account_id)
        ]
        return page_of(chosen, offset, limit)

    def __len__(self) -> int:
        return len(self._entries)
