"""Reference data: ban decisions (R1, R2), account links, evidence and holdings."""

from __future__ import annotations

from typing import Any

from marketban.domain.bans import BanBook, BanWindows
from marketban.domain.models import AccountLink, BanEvent, Evidence, Holding
from marketban.domain.rules.base import RuleBase
from marketban.domain.state import (
    AccountState,
    Controllers,
    Output,
    Payload,
    Recording,
    Source,
    rejected_output,
    require_key,
)
from marketban.domain.wire import validate


class ReferenceRules(RuleBase):
    """What reference data does to the state: bans through the ban book, links, evidence."""

    book: BanBook
    _bans_written: Recording
    _changed: list[BanWindows]

    def _on_ban(
        self, key: str | None, obj: dict[str, Any], payload: Payload, src: Source
    ) -> list[Output]:
        self._bans_written.written.clear()
        event = validate(BanEvent, obj)
        require_key(key, event.decision_id, "decision_id")
        out: list[Output] = []
        rejected = self.book.apply(event)
        # What the change means is applied here at once and also leaves as an output: the stream
        # sends it to the ban-windows topic, from which every worker's register is built.
        for record in self._changed:
            self.state.persons.apply(record)
            out.append(("ban-windows", record.decision_id, record))
        self._changed.clear()
        for bad, reason in rejected:
            if bad is event:
                raw, note = payload, ""
            else:
                # A held amend/revoke, found invalid once its issue arrived.
                raw, note = bad.model_dump(mode="json"), f" (held {bad.action} v{bad.version})"
            error = f"invalid decision {event.decision_id}: {reason}{note}"
            out.append(rejected_output(src, key, raw, error))
        return out

    def _on_account(self, key: str | None, obj: dict[str, Any]) -> list[Output]:
        link = validate(AccountLink, obj)
        require_key(key, link.account_id, "account_id")
        if link.kind != "controlled":
            self.state.links[link.account_id] = link
            return []
        ctl = self.state.controllers.get(link.account_id) or Controllers()
        if link.revoked:
            ctl.by.pop(link.person_id, None)
        else:
            ctl.by[link.person_id] = link
        if ctl.by:
            self.state.controllers[link.account_id] = ctl
        elif link.account_id in self.state.controllers:
            del self.state.controllers[link.account_id]
        return []

    def _on_evidence(self, key: str | None, obj: dict[str, Any]) -> list[Output]:
        ev = validate(Evidence, obj)
        require_key(key, ev.account_id, "account_id")
        st = self.state.accounts.get(ev.account_id) or AccountState()
        st.evidence[ev.evidence_id] = ev
        self.state.accounts[ev.account_id] = st
        return []

    def _on_holding(self, key: str | None, obj: dict[str, Any]) -> list[Output]:
        h = validate(Holding, obj)
        require_key(key, h.account_id, "account_id")
        st = self.state.accounts.get(h.account_id) or AccountState()
        snaps = [s for s in st.holdings.get(h.security, []) if s[0] != h.as_of]
        snaps.append((h.as_of, h.quantity))
        snaps.sort()
        st.holdings[h.security] = snaps
        self.state.accounts[h.account_id] = st
        return []
