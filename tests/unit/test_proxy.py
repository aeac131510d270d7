"""R8, trading under another's name: every clause, each with a wrong reading it would catch."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketban.domain.engine import Engine, Output, Source
from marketban.domain.models import Violation
from marketban.domain.proxy import (
    ProxyConfig,
    TerminalState,
    TerminalUse,
    UseNote,
    on_use,
    terminal_id,
    worth_sending,
)
from marketban.domain.rules import terminals as terminals_module
from tests.unit.helpers import CAL, ban, controlled, feed, holding, key_of, link, order

MAC = "00:1B:44:11:3A:B7"


def _engine(window: int = 20, limit: int = 5) -> Engine:
    return Engine(CAL, proxy=ProxyConfig(window=window, shared_limit=limit))


def _suspicions(outputs: list[Output]) -> dict[str, Any]:
    return {
        v.violation_id: v  # type: ignore[union-attr]
        for t, _, v in outputs
        if t == "violations" and v.kind == "suspected_proxy_trading"  # type: ignore[union-attr]
    }


def _market() -> list[tuple[str, dict[str, Any]]]:
    """P1 banned from 2024-05-13 with own account A1; Q1 (not banned) owns N1."""
    return [("bans", ban()), ("accounts", link("A1", "P1")), ("accounts", link("N1", "Q1"))]


def _session_after(day: date, sessions: int) -> date:
    for _ in range(sessions):
        day = CAL.next_trading_day(day).day
    return day


def _at(day: date, hhmm: str = "10:00") -> str:
    return f"{day.isoformat()}T{hhmm}:00+08:00"


def test_a_nominee_account_used_from_the_banned_persons_terminal_raises_one_suspicion() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O1", "A1", mac=MAC, ip="10.0.0.1")),
        ("orders", order("O2", "N1", mac=MAC, ip="10.0.0.9", at="2024-05-13T10:05:00+08:00")),
    )
    found = _suspicions(out)
    assert list(found) == ["suspected_proxy_trading:N1:P1:2024-05-13"]
    v = found["suspected_proxy_trading:N1:P1:2024-05-13"]
    assert (v.account_id, v.person_id, v.order_id, v.severity) == ("N1", "P1", "O2", "high")
    assert v.decision_ids == ["D1"]
    assert v.broker == "B001"
    for shown in ("00:1b:44:11:3a:b7", "10.0.0.1", "10.0.0.9", "A1", "O1"):
        assert shown in v.detail


def test_a_suspicion_never_changes_the_decision_of_the_foreign_order() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O1", "A1", mac=MAC)),
        ("orders", order("O2", "N1", mac=MAC)),
    )
    verdicts = {v.order_id: v.verdict for t, _, v in out if t == "decisions"}  # type: ignore[union-attr]
    assert verdicts == {"O1": "block", "O2": "allow"}


def test_either_use_may_arrive_first() -> None:
    foreign_first = feed(
        _engine(),
        *_market(),
        ("orders", order("O2", "N1", mac=MAC, at="2024-05-14T10:00:00+08:00")),
        ("orders", order("O1", "A1", mac=MAC, at="2024-05-13T10:00:00+08:00")),
    )
    assert list(_suspicions(foreign_first)) == ["suspected_proxy_trading:N1:P1:2024-05-14"]


def test_macs_compare_case_insensitively_and_in_any_usual_notation() -> None:
    assert (
        terminal_id("00:1B:44:11:3A:B7") == terminal_id("00-1b-44-11-3a-b7") == "00:1b:44:11:3a:b7"
    )
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O1", "A1", mac="00:1B:44:11:3A:B7")),
        ("orders", order("O2", "N1", mac="00:1b:44:11:3a:b7")),
    )
    assert len(_suspicions(out)) == 1


def test_placeholder_and_missing_macs_identify_no_terminal() -> None:
    for placeholder in ("00:00:00:00:00:00", "FF:FF:FF:FF:FF:FF", "ff-ff-ff-ff-ff-ff", "", "  "):
        assert terminal_id(placeholder) is None
        out = feed(
            _engine(),
            *_market(),
            ("orders", order("O1", "A1", mac=placeholder, ip="10.0.0.1")),
            ("orders", order("O2", "N1", mac=placeholder, ip="10.0.0.1")),
        )
        assert _suspicions(out) == {}, placeholder
    assert terminal_id(None) is None


def test_a_shared_ip_alone_never_raises_a_suspicion() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O1", "A1", ip="10.0.0.1")),
        ("orders", order("O2", "N1", ip="10.0.0.1")),
        ("orders", order("O3", "A1", mac="00:1B:44:11:3A:B7", ip="10.0.0.2")),
        ("orders", order("O4", "N1", mac="00:1B:44:11:3A:B8", ip="10.0.0.2")),
    )
    assert _suspicions(out) == {}


def test_the_window_is_counted_in_trading_sessions_across_a_holiday_closure() -> None:
    # From 2024-09-24, 20 trading sessions later crosses the National Day closure (1-7 Oct).
    banned_day = date(2024, 9, 24)
    at_w = _session_after(banned_day, 20)
    at_w1 = _session_after(banned_day, 21)
    assert (at_w - banned_day).days > 20 + 7  # the closure is in between
    for day, expected in ((at_w, 1), (at_w1, 0)):
        for first, second in ((("O1", "A1", banned_day), ("O2", "N1", day)),
                              (("O2", "N1", day), ("O1", "A1", banned_day))):  # fmt: skip
            out = feed(
                _engine(),
                *_market(),
                *(("orders", order(o, a, mac=MAC, at=_at(d))) for o, a, d in (first, second)),
            )
            assert len(_suspicions(out)) == expected, (day, first)


def test_a_use_before_the_ban_applies_is_not_a_banned_use() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O1", "A1", mac=MAC, at="2024-05-09T10:00:00+08:00")),
        ("orders", order("O2", "N1", mac=MAC, at="2024-05-09T10:05:00+08:00")),
    )
    assert _suspicions(out) == {}


def test_the_banned_persons_own_and_controlled_accounts_are_not_foreign_uses() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("accounts", link("A2", "P1")),
        ("accounts", controlled("C1", "P1")),
        ("orders", order("O1", "A1", mac=MAC)),
        ("orders", order("O2", "A2", mac=MAC)),
        ("orders", order("O3", "C1", mac=MAC)),
    )
    assert _suspicions(out) == {}


def test_an_order_on_an_account_the_banned_person_controls_is_a_banned_use() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("accounts", controlled("C1", "P1")),
        ("orders", order("O3", "C1", mac=MAC)),
        ("orders", order("O2", "N1", mac=MAC)),
    )
    assert list(_suspicions(out)) == ["suspected_proxy_trading:N1:P1:2024-05-13"]


def test_an_unlinked_account_is_a_foreign_use() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O1", "A1", mac=MAC)),
        ("orders", order("O9", "X1", mac=MAC)),
    )
    assert list(_suspicions(out)) == ["suspected_proxy_trading:X1:P1:2024-05-13"]


def _crowd(persons: int) -> list[tuple[str, dict[str, Any]]]:
    """P1's use, then ``persons - 1`` other persons' accounts on the same terminal."""
    msgs: list[tuple[str, dict[str, Any]]] = [("orders", order("O1", "A1", mac=MAC))]
    for i in range(persons - 1):
        msgs.append(("accounts", link(f"N{i}", f"Q{i}")))
        msgs.append(
            ("orders", order(f"ON{i}", f"N{i}", mac=MAC, at=f"2024-05-13T10:{i + 1:02d}:00+08:00"))
        )
    return msgs


def test_a_terminal_used_by_more_persons_than_the_limit_is_shared_and_raises_nothing_more() -> None:
    at_limit = feed(_engine(limit=5), ("bans", ban()), ("accounts", link("A1", "P1")), *_crowd(5))
    assert len(_suspicions(at_limit)) == 4
    over = feed(
        _engine(limit=5),
        ("bans", ban()),
        ("accounts", link("A1", "P1")),
        *_crowd(6),
        ("accounts", link("LATE", "QL")),
        ("orders", order("OL", "LATE", mac=MAC, at="2024-05-14T10:00:00+08:00")),
    )
    found = _suspicions(over)
    assert len(found) == 4
    assert not any(":LATE:" in v or ":N4:" in v for v in found)


def test_one_suspicion_per_account_person_and_session_naming_the_earliest_foreign_order() -> None:
    mac2 = "00:1B:44:11:3A:C0"
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O2", "N1", mac=MAC, at="2024-05-13T10:05:00+08:00")),
        ("orders", order("O3", "N1", mac=MAC, at="2024-05-13T09:45:00+08:00")),
        ("orders", order("O1", "A1", mac=MAC, at="2024-05-13T11:00:00+08:00")),
        ("orders", order("O4", "N1", mac=MAC, at="2024-05-13T13:00:00+08:00")),
        # The same pair on a second terminal: still one suspicion for (N1, P1, session).
        ("orders", order("O5", "A1", mac=mac2, at="2024-05-13T13:10:00+08:00")),
        ("orders", order("O6", "N1", mac=mac2, at="2024-05-13T13:20:00+08:00")),
        ("orders", order("O7", "N1", mac=MAC, at="2024-05-14T10:00:00+08:00")),
    )
    found = _suspicions(out)
    assert sorted(found) == [
        "suspected_proxy_trading:N1:P1:2024-05-13",
        "suspected_proxy_trading:N1:P1:2024-05-14",
    ]
    assert found["suspected_proxy_trading:N1:P1:2024-05-13"].order_id == "O3"
    assert (
        sum(1 for t, _, v in out if t == "violations" and v.kind == "suspected_proxy_trading") == 2
    )  # type: ignore[union-attr]


_USES = [
    ("O1", "A1", "2024-05-13T10:00:00+08:00", MAC),
    ("O2", "N1", "2024-05-14T10:00:00+08:00", MAC),
    ("O3", "N2", "2024-06-20T10:00:00+08:00", MAC),  # more than 20 sessions after O1
    ("O4", "A2", "2024-06-21T10:00:00+08:00", MAC),  # P1's second account, pairs with O3
    ("O5", "X1", "2024-05-13T11:00:00+08:00", "00:1b:44:11:3a:b7"),
    ("O6", "N1", "2024-05-15T10:00:00+08:00", "AA:BB:CC:DD:EE:01"),
]


@settings(max_examples=60, deadline=None)
@given(st.permutations(_USES))
def test_the_set_of_suspicions_does_not_depend_on_the_order_uses_arrive_in(
    uses: list[tuple[str, str, str, str]],
) -> None:
    reference = [
        ("bans", ban()),
        ("accounts", link("A1", "P1")),
        ("accounts", link("A2", "P1")),
        ("accounts", link("N1", "Q1")),
        ("accounts", link("N2", "Q2")),
    ]
    out = feed(
        _engine(), *reference, *(("orders", order(o, a, at=t, mac=m)) for o, a, t, m in uses)
    )
    assert sorted(_suspicions(out)) == [
        "suspected_proxy_trading:N1:P1:2024-05-14",
        "suspected_proxy_trading:N2:P1:2024-06-20",
        "suspected_proxy_trading:X1:P1:2024-05-13",
    ]


# ---- controlled accounts -----------------------------------------------------------------------


def test_a_controlled_accounts_orders_are_decided_under_the_controllers_measures() -> None:
    out = feed(
        _engine(),
        *_market(),
        ("orders", order("O1", "N1")),
        ("accounts", controlled("N1", "P1", "suspected_proxy_trading:N1:P1:2024-05-13")),
        ("orders", order("O2", "N1")),
        (
            "accounts",
            controlled("N1", "P1", "suspected_proxy_trading:N1:P1:2024-05-13", revoked=True),
        ),
        ("orders", order("O3", "N1")),
    )
    decisions = {v.order_id: v for t, _, v in out if t == "decisions"}  # type: ignore[union-attr]
    assert [decisions[o].verdict for o in ("O1", "O2", "O3")] == ["allow", "block", "allow"]
    blocked = decisions["O2"]
    assert blocked.person_id == "P1"
    assert blocked.decision_ids == ["D1"]
    assert "controlled by P1" in blocked.reason
    assert "suspected_proxy_trading:N1:P1:2024-05-13" in blocked.reason
    assert any(t == "violations" and v.kind == "blocked_attempt" for t, _, v in out)  # type: ignore[union-attr]


def test_pre_ban_holdings_of_a_controlled_account_do_not_cover_a_sale_under_its_controller() -> (
    None
):
    sale = order("O1", "N1", side="sell", qty=100)
    own_sale = order("O2", "A1", side="sell", qty=100)
    out = feed(
        _engine(),
        *_market(),
        ("holdings", holding("N1", qty=1000)),
        ("holdings", holding("A1", qty=1000)),
        ("accounts", controlled("N1", "P1")),
        ("orders", sale),
        ("orders", own_sale),
    )
    decisions = {v.order_id: v for t, _, v in out if t == "decisions"}  # type: ignore[union-attr]
    assert decisions["O1"].verdict == "block"
    assert "does not apply through a controlled link" in decisions["O1"].reason
    assert (decisions["O2"].verdict, decisions["O2"].clause) == ("allow_exempt", "6.6")


def test_the_owners_own_measures_still_apply_on_a_controlled_account() -> None:
    out = feed(
        _engine(),
        ("bans", ban("D2", "Q1")),
        ("accounts", link("N1", "Q1")),
        ("accounts", controlled("N1", "P9")),
        ("orders", order("O1", "N1")),
    )
    decisions = {v.order_id: v for t, _, v in out if t == "decisions"}  # type: ignore[union-attr]
    assert (decisions["O1"].verdict, decisions["O1"].person_id) == ("block", "Q1")


def test_window_zero_pairs_only_uses_of_the_same_session() -> None:
    msgs = [*_market(), ("orders", order("O1", "A1", mac=MAC))]
    same = feed(_engine(window=0), *msgs, ("orders", order("O2", "N1", mac=MAC)))
    nxt = _session_after(date(2024, 5, 13), 1)
    apart = feed(_engine(window=0), *msgs, ("orders", order("O2", "N1", mac=MAC, at=_at(nxt))))
    assert (len(_suspicions(same)), len(_suspicions(apart))) == (1, 0)
    assert nxt - date(2024, 5, 13) == timedelta(days=1)
    assert list(itertools.islice(_suspicions(same), 1)) == [
        "suspected_proxy_trading:N1:P1:2024-05-13"
    ]


def test_a_repeated_use_leaves_the_terminal_state_unwritten() -> None:
    class Counting(dict[str, Any]):
        writes = 0

        def __setitem__(self, key: str, value: Any) -> None:
            Counting.writes += 1
            super().__setitem__(key, value)

    engine = _engine()
    engine.state.terminals = Counting()
    feed(engine, *_market(), ("orders", order("O1", "N1", mac=MAC, ip="10.0.0.1")))
    assert Counting.writes == 1
    feed(
        engine,
        ("orders", order("O2", "N1", mac=MAC, ip="10.0.0.1", at="2024-05-13T11:00:00+08:00")),
    )
    assert Counting.writes == 1  # the same account, session, IP and a later order: nothing new
    feed(
        engine,
        ("orders", order("O3", "N1", mac=MAC, ip="10.0.0.2", at="2024-05-13T11:05:00+08:00")),
    )
    assert Counting.writes == 2  # a new IP is news


# ---- the account side sends only what can change a terminal's state -----------------------------


def _uses_sent(engine: Engine, *messages: tuple[str, dict[str, Any]]) -> list[str]:
    """Order ids whose terminal use the account's side sent (``handle``: no hop taken)."""
    sent: list[str] = []
    for topic, value in messages:
        outputs = engine.handle(topic, key_of(topic, value), value, Source(topic))
        for out_topic, _key, out in outputs:
            if out_topic == "terminal-uses":
                sent.append(out.order_id)  # type: ignore[union-attr]
    return sent


def test_a_repeated_use_of_a_terminal_is_not_sent_again_but_news_is() -> None:
    engine = _engine()
    day2 = _at(_session_after(date(2024, 5, 13), 1))
    sent = _uses_sent(
        engine,
        *_market(),
        ("orders", order("O1", "N1", mac=MAC, ip="10.0.0.1", at=_at(date(2024, 5, 13), "10:00"))),
        ("orders", order("O2", "N1", mac=MAC, ip="10.0.0.1", at=_at(date(2024, 5, 13), "10:30"))),
        ("orders", order("O3", "N1", mac=MAC, at=_at(date(2024, 5, 13), "10:40"))),  # no IP
        ("orders", order("O4", "N1", mac=MAC, ip="10.0.0.2", at=_at(date(2024, 5, 13), "10:50"))),
        ("orders", order("O5", "N1", mac=MAC, ip="10.0.0.1", at=_at(date(2024, 5, 13), "09:50"))),
        ("orders", order("O6", "N1", mac=MAC, ip="10.0.0.1", at=day2)),
        ("orders", order("O7", "N1", mac=MAC, ip="10.0.0.1", at=_at(date(2024, 5, 13), "11:00"))),
        ("orders", order("O8", "N1", mac="AA:BB:CC:DD:EE:01", ip="10.0.0.1", at=day2)),
        ("accounts", controlled("N1", "P1")),
        ("orders", order("O9", "N1", mac=MAC, ip="10.0.0.1", at=day2)),
    )
    # O2, O3: the same session and device, later, no new IP. O4: a new IP. O5: an earlier
    # order (the terminal names the earliest). O6: a new session. O7: an earlier session than
    # the last one sent (sent; the later session's note is kept). O8: another terminal. O9: the
    # account is now under P1's measures (its persons and measures changed).
    assert sent == ["O1", "O4", "O5", "O6", "O7", "O8", "O9"]


_ACCOUNTS = ("A1", "N1", "N2")
_PERSONS = {"A1": ["P1"], "N1": ["Q1"], "N2": []}


@st.composite
def _use_flow(draw: st.DrawFn) -> list[TerminalUse]:
    """Uses of one terminal by three accounts over three sessions, with changing measures."""
    uses: list[TerminalUse] = []
    for i in range(draw(st.integers(1, 25))):
        account = draw(st.sampled_from(_ACCOUNTS))
        day = draw(st.integers(0, 2))
        session = date(2024, 5, 13) + timedelta(days=day)
        persons = _PERSONS[account] + draw(st.sampled_from([[], ["R1"]]))
        banned = {"P1": ["D1"]} if account == "A1" and draw(st.booleans()) else {}
        uses.append(
            TerminalUse(
                terminal="00:1b:44:11:3a:b7",
                ip=draw(st.sampled_from([None, "10.0.0.1", "10.0.0.2"])),
                account_id=account,
                persons=persons,
                banned=banned,
                session=session,
                order_id=f"O{i}",
                entered_at=datetime(2024, 5, 13, 2, tzinfo=UTC)
                + timedelta(days=day, minutes=draw(st.integers(0, 9))),
                broker="B001",
            )
        )
    return uses


@settings(max_examples=200, deadline=None)
@given(_use_flow())
def test_leaving_out_the_uses_not_worth_sending_changes_no_terminal_state_and_no_suspicion(
    uses: list[TerminalUse],
) -> None:
    every, filtered = TerminalState(), TerminalState()
    last: dict[str, UseNote] = {}
    found_every: list[Violation] = []
    found_filtered: list[Violation] = []
    for use in uses:
        found_every += on_use(every, use, CAL, 20, 5, None)[0]
        send, keep = worth_sending(last.get(use.account_id), use)
        if keep is not None:
            last[use.account_id] = keep
        if send:
            found_filtered += on_use(filtered, use, CAL, 20, 5, None)[0]
    assert filtered == every
    assert found_filtered == found_every


def test_what_was_sent_is_state_not_memory_a_new_engine_or_an_evicted_account_sends_no_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(terminals_module, "_SENT_KEPT", 1)  # every other account evicted
    first = _engine()
    day = date(2024, 5, 13)
    flow = [
        ("orders", order("O1", "N1", mac=MAC, ip="10.0.0.1", at=_at(day, "10:00"))),
        ("orders", order("O2", "N2", mac=MAC, ip="10.0.0.1", at=_at(day, "10:01"))),
        ("orders", order("O3", "N1", mac=MAC, ip="10.0.0.1", at=_at(day, "10:02"))),
    ]
    assert _uses_sent(first, *_market(), *flow) == ["O1", "O2"]
    reopened = Engine(CAL, first.state, first.proxy)  # a task reopened on the same store
    again = [
        ("orders", order("O4", "N2", mac=MAC, ip="10.0.0.1", at=_at(day, "10:03"))),
        ("orders", order("O5", "N1", mac=MAC, ip="10.0.0.9", at=_at(day, "10:04"))),
    ]
    assert _uses_sent(reopened, *again) == ["O5"]  # O4 repeats O2; O5 has a new IP
