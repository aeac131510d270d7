"""A task's ban view, loaded person by person from the task's store when an order asks.

Every task holds every decision (it merges all of ``bans``), but an order only needs the windows
of its own account's person. Building the whole view when a task opens cost a restart 15 s at
10,000 decisions across six tasks, and kept six copies in memory. Here a person's windows are
computed from the store's decision records the first time that person is looked up, through an
index person -> decision ids kept in the same store (written in the batch's transaction, like
every other state change). A batch that fails to commit takes its task down with it: the task
opens again with a fresh view, so nothing it loaded or applied outlives the store's truth.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from pydantic import BaseModel, Field

from marketban.domain.bans import BanRecord, BanView, BanWindows, PersonBans, ban_windows
from marketban.domain.calendars import MarketCalendar


class PersonDecisions(BaseModel):
    """The decisions that name one person (the index of a task's store)."""

    decisions: list[str] = Field(default_factory=list)


class StoredBanView(BanView):
    """BanView over a task's store: a person's windows are loaded on first use."""

    def __init__(
        self,
        bans: MutableMapping[str, BanRecord],
        index: MutableMapping[str, PersonDecisions],
        calendar: MarketCalendar,
    ) -> None:
        super().__init__()
        self._bans = bans
        self._index = index
        self._calendar = calendar
        self._loaded: set[str] = set()

    def get(self, person_id: str) -> PersonBans | None:
        """The person's windows, loaded from the store the first time."""
        self._load(person_id)
        return super().get(person_id)

    def apply(self, record: BanWindows) -> None:
        """Index a ban change's person in the store; apply it here if the person is loaded.

        A person not loaded yet is loaded from the store when first asked for, which then
        already holds this change (the decision record is written in the same batch).
        """
        person = record.person_id
        if person is not None:
            entry = self._index.get(person)
            if entry is None or record.decision_id not in entry.decisions:
                known = list(entry.decisions) if entry is not None else []
                self._index[person] = PersonDecisions(decisions=[*known, record.decision_id])
        # Applied here also when the decision is held for another person (a re-issue naming
        # someone else), so that person's windows drop it.
        if person is None or person in self._loaded or self.holds(record.decision_id):
            super().apply(record)

    def _load(self, person_id: str) -> None:
        if person_id in self._loaded:
            return
        self._loaded.add(person_id)
        entry = self._index.get(person_id)
        for decision_id in entry.decisions if entry is not None else ():
            record = self._bans.get(decision_id)
            if record is not None and record.issued and record.person_id == person_id:
                super().apply(ban_windows(record, self._calendar))
