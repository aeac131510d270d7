"""R3 and R4: an order's decision, under the trading measures of the account's persons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from marketban.domain.bans import Window
from marketban.domain.fastpath import ClaimWire, DecisionRecord, OrderWire
from marketban.domain.models import (
    AccountLink,
    Clause,
    Decision,
    ExemptionClaim,
    Order,
    Side,
    Verdict,
    Violation,
)
from marketban.domain.rules.base import Measures
from marketban.domain.rules.terminals import TerminalRules
from marketban.domain.state import (
    AccountState,
    OrderTrack,
    Output,
    Payload,
    Source,
    rejected_output,
    require_key,
)
from marketban.domain.wire import DecodeError, validate

CLAUSE_NAMES: Final = {
    "6.1": "ordered buy-back (责令回购)",
    "6.2": "ordered disposal of illegally held securities",
    "6.3": "court-enforced deduction, sale or transfer",
    "6.4": "credit-risk unwinding",
    "6.5": "obligations disclosed before the ban",
    "6.6": "sale of pre-ban holdings",
    "6.7": "other approved case",
}


@dataclass(frozen=True, slots=True)
class Ask:
    """What R4 judges: an order, or an execution checked as an order (R5)."""

    side: Side
    security: str
    quantity: int
    claim: ExemptionClaim | None


@dataclass(frozen=True, slots=True)
class Judgement:
    """What R4 found: the verdict, the clause it rests on, the quota it reserves, why."""

    verdict: Verdict
    clause: Clause | None
    quota_key: str | None
    text: str


class OrderRules(TerminalRules):
    """R3/R4: whose measures apply to an account's order, and what they allow."""

    def _measures(self, account_id: str, link: AccountLink | None, session: date) -> Measures:
        """The owner's and the controllers' trading windows on ``session`` (R4, R8)."""
        persons: list[str] = []
        windows: list[Window] = []
        owner_windows: list[Window] = []
        banned: dict[str, list[str]] = {}
        named = link.person_id if link is not None else None
        first_controller: str | None = None
        if link is not None:
            persons.append(link.person_id)
            person = self.state.persons.get(link.person_id)
            owner_windows = person.trading_windows_on(session) if person else []
            windows += owner_windows
            if owner_windows:
                banned[link.person_id] = decision_ids(owner_windows)
        via: list[str] = []
        ctl = self.state.controllers.get(account_id)
        for pid, c in sorted(ctl.by.items()) if ctl else ():
            if pid in banned:
                continue
            persons.append(pid)
            person = self.state.persons.get(pid)
            found = person.trading_windows_on(session) if person else []
            if found:
                windows += found
                banned[pid] = decision_ids(found)
                ref = f", confirmed suspicion {c.reference}" if c.reference else ""
                via.append(f"account {account_id} is controlled by {pid} (controlled link{ref})")
                first_controller = first_controller or pid
        if not owner_windows and first_controller is not None:
            named = first_controller  # the decision names whose measure it applies
        return Measures(named, persons, windows, owner_windows, via, banned)

    def _on_order(
        self,
        key: str | None,
        obj: dict[str, Any],
        raw: Payload,
        src: Source,
        now: datetime | None,
    ) -> list[Output]:
        """R3/R4 for an order the fast path did not take; ``raw`` is the payload as it came."""
        try:
            order = validate(Order, obj)
            require_key(key, order.account_id, "account_id")
        except DecodeError as exc:
            return self._invalid_order(key, obj, raw, src, str(exc))
        return self._decide(key, order, raw, src, now)

    def _decide(
        self,
        key: str | None,
        order: Order | OrderWire,
        raw: Payload,
        src: Source,
        now: datetime | None,
    ) -> list[Output]:
        """R3/R4 for a valid order (the pydantic model, or the fast path's struct)."""
        session_day = self.calendar.session_of(order.entered_at)
        session = session_day.day
        decided_at = now or order.entered_at
        link = self.state.links.get(order.account_id)
        m = self._measures(order.account_id, link, session)
        if not m.persons:
            out = [
                self._decision(
                    order,
                    person_id=None,
                    verdict="allow",
                    clause=None,
                    ids=[],
                    reason="no person is linked to this account",
                    session=session,
                    decided_at=decided_at,
                )
            ]
            return self._with_use(out, order, m, session)
        st = self.state.accounts.get(order.account_id) or AccountState()
        seen = st.orders.get(order.order_id)
        # An execution can be consumed before its order (they travel on different topics); the
        # order still gets its one decision, and the breach its fill raised stays recorded.
        duplicate = seen if seen is not None and seen.verdict != "undecided" else None
        if duplicate is not None:
            return [
                rejected_output(
                    src,
                    key,
                    raw,
                    f"duplicate order_id {order.order_id}: already decided ({duplicate.verdict}) "
                    f"for session {duplicate.session}",
                )
            ]
        st.evict_before(session)
        claim = (
            order.exemption.to_model()
            if isinstance(order.exemption, ClaimWire)
            else order.exemption
        )
        track = OrderTrack(
            order_id=order.order_id,
            session=session,
            verdict="allow",
            side=order.side,
            security=order.security,
            quantity=order.quantity,
            claim=claim,
            breached=seen is not None and seen.breached,
        )
        est = (
            " (session date estimated: the calendar does not know that year yet)"
            if session_day.estimated
            else ""
        )
        if not m.windows:
            track.covered = order.quantity
            st.orders[order.order_id] = track
            self.state.accounts[order.account_id] = st
            who = " nor ".join(f"person {p}" for p in m.persons)
            text = f"{who} has no trading measure for session {session}{est}"
            out = [
                self._decision(
                    order,
                    person_id=m.person_id,
                    verdict="allow",
                    clause=None,
                    ids=[],
                    reason=text,
                    session=session,
                    decided_at=decided_at,
                )
            ]
            return self._with_use(out, order, m, session)
        ids = decision_ids(m.windows)
        ask = Ask(order.side, order.security, order.quantity, claim)
        j = self._judge(st, m, session, ask)
        track.verdict = j.verdict
        if j.verdict == "allow_exempt":
            track.quota_key = j.quota_key
            track.reserved = order.quantity
        st.orders[order.order_id] = track
        self.state.accounts[order.account_id] = st
        decision = self._decision(
            order,
            person_id=m.person_id,
            verdict=j.verdict,
            clause=j.clause,
            ids=ids,
            reason=j.text + est,
            session=session,
            decided_at=decided_at,
        )
        if j.verdict != "block":
            return self._with_use([decision], order, m, session)
        violation = Violation(
            violation_id=f"blocked_attempt:{order.order_id}",
            kind="blocked_attempt",
            severity="medium",
            account_id=order.account_id,
            person_id=m.person_id,
            order_id=order.order_id,
            decision_ids=ids,
            broker=order.broker,
            session=session,
            detected_at=decided_at,
            detail=j.text,
        )
        return self._with_use(
            [decision, ("violations", order.account_id, violation)], order, m, session
        )

    def _judge(self, st: AccountState, m: Measures, session: date, ask: Ask) -> Judgement:
        """R4 steps 2-4 for an account whose persons are under a trading measure on ``session``.

        Every window must allow the order. 6.6 (pre-ban holdings) speaks for the owner's own
        bans only: an account's holdings are not its controller's pre-ban holdings (R8).
        """
        windows = m.windows
        bans = "; ".join(w.describe() for w in windows)
        if m.via:
            bans += " (" + "; ".join(m.via) + ")"
        failures: list[str] = []
        claim = ask.claim
        if claim is not None and claim.clause != "6.6":
            problem = evidence_problem(st, claim, windows, session, ask)
            if problem is None:
                key = f"ev:{claim.reference}"
                ev = st.evidence[claim.reference or ""]
                taken = st.used.get(key, 0) + st.reserved(key, session)
                left = ev.max_quantity - taken - ask.quantity
                return Judgement(
                    "allow_exempt",
                    claim.clause,
                    key,
                    f"allowed under the Art. {_art(claim.clause)} exception, "
                    f"{CLAUSE_NAMES[claim.clause]}, with evidence {ev.evidence_id} "
                    f"({left} of {ev.max_quantity} left after this order), despite {bans}",
                )
            failures.append(f"claimed exception {claim.clause} failed: {problem}")
        if claim is not None and claim.clause == "6.6" and ask.side == "buy":
            failures.append("claimed exception 6.6 covers only sales of pre-ban holdings")
        if ask.side == "sell" and m.via:
            failures.append(
                "the Art. 6(6) exception for pre-ban holdings does not apply through a "
                "controlled link"
            )
        elif ask.side == "sell":
            start = min(w.start for w in windows)
            key = f"66:{ask.security}"
            held = st.pre_ban_holding(ask.security, start)
            taken = st.used.get(key, 0) + st.reserved(key, session)
            if held - taken >= ask.quantity:
                return Judgement(
                    "allow_exempt",
                    "6.6",
                    key,
                    f"allowed under the Art. 6(6) exception, sale of pre-ban holdings: {held} of "
                    f"{ask.security} held before {start}, {taken} already sold or reserved, "
                    f"{held - taken - ask.quantity} left after this order, despite {bans}",
                )
            failures.append(
                f"pre-ban holdings do not cover the sale: {held} of {ask.security} held before "
                f"{start}, {taken} already sold or reserved, the order needs {ask.quantity}"
            )
        why = f"; {'; '.join(failures)}" if failures else ""
        return Judgement("block", None, None, f"blocked: {bans} applies to session {session}{why}")

    def _invalid_order(
        self, key: str | None, obj: dict[str, Any], raw: Payload, src: Source, error: str
    ) -> list[Output]:
        out: list[Output] = [rejected_output(src, key, raw, f"invalid order: {error}")]
        order_id, account_id = obj.get("order_id"), obj.get("account_id")
        if isinstance(order_id, str) and order_id and isinstance(account_id, str) and account_id:
            # Only a record keyed by its account sits in the partition that holds the account's
            # state: a mis-keyed one cannot see it in the worker, so replay must not either.
            link = self.state.links.get(account_id) if key == account_id else None
            out.append(
                (
                    "decisions",
                    account_id,
                    Decision(
                        order_id=order_id,
                        account_id=account_id,
                        person_id=link.person_id if link else None,
                        verdict="block",
                        clause=None,
                        decision_ids=[],
                        reason=f"invalid order: {error}",
                        session=None,
                        decided_at=None,
                    ),
                )
            )
        return out

    @staticmethod
    def _decision(
        order: Order | OrderWire,
        *,
        person_id: str | None,
        verdict: Verdict,
        clause: Clause | None,
        ids: list[str],
        reason: str,
        session: date,
        decided_at: datetime,
    ) -> Output:
        return (
            "decisions",
            order.account_id,
            DecisionRecord(
                order_id=order.order_id,
                account_id=order.account_id,
                person_id=person_id,
                verdict=verdict,
                clause=clause,
                decision_ids=ids,
                reason=reason,
                session=session,
                decided_at=decided_at,
            ),
        )


def evidence_problem(
    st: AccountState, claim: ExemptionClaim, windows: list[Window], session: date, ask: Ask
) -> str | None:
    """Why the claimed evidence does not allow this order, or None when it does (R4 step 2)."""
    if claim.reference is None:
        return "the claim names no evidence reference"
    ev = st.evidence.get(claim.reference)
    if ev is None:
        return f"no evidence {claim.reference} is on file for this account"
    name = f"evidence {ev.evidence_id}"
    if ev.clause != claim.clause:
        return f"{name} is for clause {ev.clause}, not {claim.clause}"
    if ev.revoked:
        return f"{name} has been revoked"
    if not ev.valid_from <= session <= ev.valid_until:
        return f"{name} is valid {ev.valid_from} to {ev.valid_until}, not for session {session}"
    if ev.security is not None and ev.security != ask.security:
        return f"{name} covers security {ev.security}, not {ask.security}"
    if ev.side != ask.side:
        return f"{name} allows {ev.side} orders, not {ask.side}"
    if ev.clause == "6.5":
        start = min(w.start for w in windows)
        if ev.disclosed_on is None or ev.disclosed_on >= start:
            return f"the disclosure of {ev.disclosed_on} is not before the ban's start {start}"
    key = f"ev:{ev.evidence_id}"
    left = ev.max_quantity - st.used.get(key, 0) - st.reserved(key, session)
    if left < ask.quantity:
        return (
            f"{name} has {max(left, 0)} of {ev.max_quantity} left, the order needs {ask.quantity}"
        )
    return None


def decision_ids(windows: list[Window]) -> list[str]:
    """The ban decisions behind ``windows``, each once, sorted."""
    return sorted({w.decision_id for w in windows})


def _art(clause: str) -> str:
    return f"6({clause.split('.')[1]})"
