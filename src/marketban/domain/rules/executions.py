"""R5: an execution checked as the order it fills would have been."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marketban.domain.models import Execution, Violation
from marketban.domain.rules.orders import Ask, OrderRules, decision_ids
from marketban.domain.state import AccountState, OrderTrack, Output, require_key
from marketban.domain.wire import validate


class ExecutionRules(OrderRules):
    """R5: executions, and the breaches they reveal."""

    def _on_execution(
        self, key: str | None, obj: dict[str, Any], now: datetime | None
    ) -> list[Output]:
        ex = validate(Execution, obj)
        require_key(key, ex.account_id, "account_id")
        st = self.state.accounts.get(ex.account_id)
        track = st.orders.get(ex.order_id) if st else None
        if ex.status != "fill":
            if st is not None and track is not None and track.open:
                track.open, track.reserved, track.covered = False, 0, 0
                self.state.accounts[ex.account_id] = st
            return []
        excess = ex.quantity
        if st is not None and track is not None:
            if track.quota_key is not None:
                take = min(excess, track.reserved)
                track.reserved -= take
                st.used[track.quota_key] = st.used.get(track.quota_key, 0) + take
                excess -= take
            elif track.verdict == "allow":
                take = min(excess, track.covered)
                track.covered -= take
                excess -= take
            self.state.accounts[ex.account_id] = st
        if excess == 0:
            return []
        session = self.calendar.session_of(ex.executed_at).day
        m = self._measures(ex.account_id, self.state.links.get(ex.account_id), session)
        windows = m.windows
        if not windows:
            return []
        st = st or AccountState()
        claim = track.claim if track is not None else None
        j = self._judge(st, m, session, Ask(ex.side, ex.security, excess, claim))
        if j.verdict == "allow_exempt" and j.quota_key is not None:
            # R5: checked as an order at its execution time, it would have been allowed: it uses
            # that quota directly (nothing is reserved, the quantity is already executed).
            st.used[j.quota_key] = st.used.get(j.quota_key, 0) + excess
            self.state.accounts[ex.account_id] = st
            return []
        if track is None:
            track = OrderTrack(
                order_id=ex.order_id,
                session=session,
                verdict="undecided",
                side=ex.side,
                security=ex.security,
                quantity=0,
                open=False,
            )
            st.orders[ex.order_id] = track
        if track.breached:
            self.state.accounts[ex.account_id] = st
            return []  # each violation is emitted once
        track.breached = True
        self.state.accounts[ex.account_id] = st
        what = {
            "undecided": "an order that was never decided",
            "block": "an order that was blocked",
        }.get(track.verdict, f"an order decided {track.verdict}, beyond what that decision covered")
        detail = f"{excess} of {ex.security} {ex.side} executed on {what} ({ex.order_id}); {j.text}"
        violation = Violation(
            violation_id=f"executed_breach:{ex.order_id}",
            kind="executed_breach",
            severity="high",
            account_id=ex.account_id,
            person_id=m.person_id,
            order_id=ex.order_id,
            decision_ids=decision_ids(windows),
            broker=ex.broker,
            session=session,
            detected_at=now or ex.executed_at,
            detail=detail,
        )
        return [("violations", ex.account_id, violation)]
