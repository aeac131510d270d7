"""R8 on the engine's side: the terminal use an order leaves, a terminal's uses, suspicions."""

from __future__ import annotations

from collections import OrderedDict
from datetime import date, datetime
from typing import Final

from marketban.domain.fastpath import OrderWire
from marketban.domain.models import Order, Violation
from marketban.domain.proxy import (
    SentUses,
    TerminalState,
    TerminalUse,
    on_use,
    repeats,
    terminal_id,
    worth_sending,
)
from marketban.domain.rules.base import Measures, RuleBase
from marketban.domain.state import Output, Raised

#: Accounts whose R8 notes an engine keeps decoded (``Engine._sent``): a few MB per task.
_SENT_KEPT: Final = 16_384


class TerminalRules(RuleBase):
    """R8: what a terminal's uses reveal, and the use each order of an account leaves."""

    _sent: OrderedDict[str, SentUses]

    def _on_terminal_use(self, use: TerminalUse, now: datetime | None) -> list[Output]:
        st = self.state.terminals.get(use.terminal) or TerminalState()
        cfg = self.proxy
        found, changed = on_use(st, use, self.calendar, cfg.window, cfg.shared_limit, now)
        if changed:  # a repeated use leaves the state as it was: no write, no changelog record
            self.state.terminals[use.terminal] = st
        return [("proxy-suspicions", v.account_id, v) for v in found]

    def _on_suspicion(self, violation: Violation) -> list[Output]:
        if violation.violation_id in self.state.raised:
            return []
        self.state.raised[violation.violation_id] = Raised(session=violation.session)
        return [("violations", violation.account_id, violation)]

    def _terminal_use(self, order: Order | OrderWire, m: Measures, session: date) -> Output | None:
        """R8's record of this order's use of its terminal, when its MAC identifies one.

        None too for a repeat that cannot change what the terminal knows (``worth_sending``):
        an active trader's next orders from the same device in a session cost no hop.
        """
        terminal = order.terminal
        tid = terminal_id(terminal.mac) if terminal is not None else None
        if tid is None or terminal is None:
            return None
        account = order.account_id
        sent = self._sent.get(account)
        if sent is not None:
            self._sent.move_to_end(account)
        else:
            sent = self.state.sent_uses.get(account)
            if sent is not None:
                self._remember(account, sent)
        last = sent.by_terminal.get(tid) if sent is not None else None
        ip = terminal.ip or None
        if (  # most orders: no use is even built
            last is not None
            and last.session == session
            and repeats(last, order.entered_at, m.persons, m.banned, ip)
        ):
            return None
        use = TerminalUse(
            terminal=tid,
            ip=ip,
            account_id=account,
            persons=m.persons,
            banned=m.banned,
            session=session,
            order_id=order.order_id,
            entered_at=order.entered_at,
            broker=order.broker,
        )
        send, keep = worth_sending(last, use)
        if keep is not None:
            sent = sent or SentUses()
            sent.by_terminal[tid] = keep
            self.state.sent_uses[account] = sent
            self._remember(account, sent)
        return ("terminal-uses", tid, use) if send else None

    def _remember(self, account: str, sent: SentUses) -> None:
        sent_cache = self._sent
        sent_cache[account] = sent
        sent_cache.move_to_end(account)
        if len(sent_cache) > _SENT_KEPT:
            sent_cache.popitem(last=False)  # the account that traded longest ago

    def _with_use(
        self, out: list[Output], order: Order | OrderWire, m: Measures, session: date
    ) -> list[Output]:
        use = self._terminal_use(order, m, session)
        if use is not None:
            out.append(use)
        return out
