"""Writes rules.jsonl (replay input) and rules.expected.json (what the spec says must come out).

Every expectation below was worked out by hand from SPEC.md and the published calendars, never
taken from the engine's output. Run: python tests/scenarios/build_rules.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
lines: list[dict[str, object]] = []
decisions: dict[str, list[object]] = {}  # order_id -> [verdict, clause, session]
violations: list[str] = []
rejected_lines: list[int] = []


def put(
    case: str, topic: str, key: str | None, value: object = None, raw: str | None = None
) -> int:
    line: dict[str, object] = {"case": case, "topic": topic, "key": key}
    if raw is not None:
        line["raw"] = raw
    else:
        line["value"] = value
    lines.append(line)
    return len(lines)


def ban(
    case: str,
    did: str,
    person: str,
    measures: list[dict[str, object]],
    served: str | None,
    *,
    version: int = 1,
    action: str = "issue",
    ended: str | None = "2023-11-30",
    mitigated: bool = False,
    effective_on: str | None = None,
    reject: bool = False,
) -> None:
    n = put(
        case,
        "bans",
        did,
        {
            "decision_id": did,
            "version": version,
            "action": action,
            "issuer": "CSRC",
            "person_id": person,
            "person_name": "测试",
            "measures": measures,
            "served_on": served,
            "violation_ended_on": ended,
            "mitigated": mitigated,
            "effective_on": effective_on,
        },
    )
    if reject:
        rejected_lines.append(n)


def link(account: str, person: str, kind: str = "cash") -> None:
    put(
        f"link {account} to {person}",
        "accounts",
        account,
        {"account_id": account, "person_id": person, "kind": kind},
    )


def _own_mac(account: str) -> str:
    digits = "".join(f"{ord(c):02X}" for c in account.ljust(4, "_")[:4])
    return f"02:00:{digits[0:2]}:{digits[2:4]}:{digits[4:6]}:{digits[6:8]}"


def order(
    case: str,
    oid: str,
    account: str,
    side: str,
    qty: int,
    at: str,
    *,
    security: str = "600000",
    exemption: dict[str, object] | None = None,
    terminal: dict[str, str] | None = None,
    expect: tuple[str, str | None, str | None],
) -> None:
    value: dict[str, object] = {
        "order_id": oid,
        "account_id": account,
        "exchange": "XSHG",
        "security": security,
        "side": side,
        "quantity": qty,
        "price": "10.50",
        "entered_at": at,
        "broker": "B001",
        # Each account its own device unless a case says otherwise (R8 pairs shared devices).
        "terminal": terminal or {"ip": "10.1.2.3", "mac": _own_mac(account)},
    }
    if exemption:
        value["exemption"] = exemption
    put(case, "orders", account, value)
    decisions[oid] = list(expect)
    if expect[0] == "block":
        violations.append(f"blocked_attempt:{oid}")


def execution(
    case: str,
    oid: str,
    account: str,
    side: str,
    status: str,
    qty: int,
    at: str,
    *,
    security: str = "600000",
    breach: bool = False,
) -> None:
    put(
        case,
        "executions",
        account,
        {
            "order_id": oid,
            "account_id": account,
            "security": security,
            "side": side,
            "status": status,
            "quantity": qty,
            "executed_at": at,
            "broker": "B001",
        },
    )
    if breach:
        violations.append(f"executed_breach:{oid}")


def evidence(
    eid: str,
    account: str,
    clause: str,
    side: str,
    max_q: int,
    *,
    security: str | None = "600000",
    valid: tuple[str, str] = ("2024-05-13", "2024-06-30"),
    disclosed: str | None = None,
    revoked: bool = False,
) -> None:
    put(
        f"evidence {eid}",
        "evidence",
        account,
        {
            "evidence_id": eid,
            "clause": clause,
            "account_id": account,
            "security": security,
            "side": side,
            "max_quantity": max_q,
            "valid_from": valid[0],
            "valid_until": valid[1],
            "issued_by": "CSRC",
            "disclosed_on": disclosed,
            "revoked": revoked,
        },
    )


def holding(account: str, security: str, qty: int, as_of: str) -> None:
    put(
        f"holdings {account} {security}",
        "holdings",
        account,
        {"account_id": account, "security": security, "quantity": qty, "as_of": as_of},
    )


T5 = [{"kind": "trading", "years": 5}, {"kind": "business", "lifetime": True, "lifetime_ground": 4}]
BLOCK, ALLOW, EXEMPT = "block", "allow", "allow_exempt"

# --- P1: 5-year trading ban served Fri 2024-05-10; trading starts Mon 2024-05-13 (R2) ---------
ban("P1 banned: trading 5y + lifetime business (Art. 7 item 4)", "CSRC-1", "P1", T5, "2024-05-10")
link("A1", "P1")
link("A2", "P1", "credit")
order(
    "R4.1 an unlinked account is allowed",
    "O-01",
    "A9",
    "buy",
    100,
    "2024-05-13T09:31:02.123+08:00",
    expect=(ALLOW, None, "2024-05-13"),
)
order(
    "R4.4 banned person's buy is blocked",
    "O-02",
    "A1",
    "buy",
    1000,
    "2024-05-13T09:31:02.123+08:00",
    expect=(BLOCK, None, "2024-05-13"),
)
order(
    "R2 served day itself is before the start (next trading day)",
    "O-03",
    "A1",
    "buy",
    100,
    "2024-05-10T14:00:00+08:00",
    expect=(ALLOW, None, "2024-05-10"),
)
order(
    "R3 exactly 15:00:00 on the served day is that day's session",
    "O-04",
    "A1",
    "buy",
    100,
    "2024-05-10T15:00:00+08:00",
    expect=(ALLOW, None, "2024-05-10"),
)
order(
    "R3 15:00:01 is for the next session, inside the ban",
    "O-05",
    "A1",
    "buy",
    100,
    "2024-05-10T15:00:01+08:00",
    expect=(BLOCK, None, "2024-05-13"),
)
order(
    "R3 a Saturday order is for Monday's session",
    "O-06",
    "A1",
    "buy",
    100,
    "2024-05-11T10:00:00+08:00",
    expect=(BLOCK, None, "2024-05-13"),
)
order(
    "R3 an offset other than +08:00 is converted to China time (07:00Z = 15:00 CST)",
    "O-07",
    "A1",
    "buy",
    100,
    "2024-05-10T07:00:00Z",
    expect=(ALLOW, None, "2024-05-10"),
)
order(
    "Art. 6 一码通: every linked account of the person is covered",
    "O-08",
    "A2",
    "buy",
    100,
    "2024-05-13T10:00:00+08:00",
    security="000001",
    expect=(BLOCK, None, "2024-05-13"),
)
order(
    "R3 all venues are covered (Shenzhen security)",
    "O-09",
    "A2",
    "buy",
    100,
    "2024-05-13T10:01:00+08:00",
    security="300750",
    expect=(BLOCK, None, "2024-05-13"),
)

# --- R4.3 / 6.6: selling pre-ban holdings ----------------------------------------------------
holding("A1", "600000", 20000, "2024-05-10")
holding("A1", "600000", 25000, "2024-05-13")  # as_of on the start day: not pre-ban
order(
    "6.6 sell within pre-ban holdings",
    "O-10",
    "A1",
    "sell",
    5000,
    "2024-05-14T09:40:00+08:00",
    expect=(EXEMPT, "6.6", "2024-05-14"),
)
order(
    "6.6 no partial allowance: 16000 > 15000 left",
    "O-11",
    "A1",
    "sell",
    16000,
    "2024-05-14T09:41:00+08:00",
    expect=(BLOCK, None, "2024-05-14"),
)
order(
    "6.6 exactly what is left",
    "O-12",
    "A1",
    "sell",
    15000,
    "2024-05-14T09:42:00+08:00",
    expect=(EXEMPT, "6.6", "2024-05-14"),
)
order(
    "6.6 quota now exhausted",
    "O-13",
    "A1",
    "sell",
    1,
    "2024-05-14T09:43:00+08:00",
    expect=(BLOCK, None, "2024-05-14"),
)
order(
    "6.6 needs holdings of that security",
    "O-14",
    "A1",
    "sell",
    10,
    "2024-05-14T09:44:00+08:00",
    security="600001",
    expect=(BLOCK, None, "2024-05-14"),
)
execution("fill O-10 fully", "O-10", "A1", "sell", "fill", 5000, "2024-05-14T09:40:05+08:00")
order(
    "R5 next session: O-12's unfilled reservation lapsed, O-10's 5000 is used",
    "O-15",
    "A1",
    "sell",
    15000,
    "2024-05-15T09:30:00+08:00",
    expect=(EXEMPT, "6.6", "2024-05-15"),
)
order(
    "R4 6.6 named on a buy does not apply",
    "O-16",
    "A1",
    "buy",
    10,
    "2024-05-15T09:31:00+08:00",
    exemption={"clause": "6.6", "reference": None},
    expect=(BLOCK, None, "2024-05-15"),
)

# --- R4.2: evidence-backed exceptions --------------------------------------------------------
evidence("EV-1", "A1", "6.1", "buy", 5000)
order(
    "6.1 ordered buy-back within evidence",
    "O-20",
    "A1",
    "buy",
    3000,
    "2024-05-16T10:00:00+08:00",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(EXEMPT, "6.1", "2024-05-16"),
)
order(
    "6.1 quota: 3000 reserved, 2000 left, order needs 3000",
    "O-21",
    "A1",
    "buy",
    3000,
    "2024-05-16T10:01:00+08:00",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(BLOCK, None, "2024-05-16"),
)
execution("fill 1000 of O-20", "O-20", "A1", "buy", "fill", 1000, "2024-05-16T10:00:10+08:00")
execution("cancel the rest of O-20", "O-20", "A1", "buy", "cancel", 0, "2024-05-16T10:02:00+08:00")
order(
    "R5 cancel released 2000: 4000 left",
    "O-22",
    "A1",
    "buy",
    4000,
    "2024-05-16T10:03:00+08:00",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(EXEMPT, "6.1", "2024-05-16"),
)
order(
    "6.1 quota exhausted by the open reservation",
    "O-23",
    "A1",
    "buy",
    1,
    "2024-05-16T10:04:00+08:00",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(BLOCK, None, "2024-05-16"),
)
order(
    "6.1 unknown evidence reference",
    "O-24",
    "A1",
    "buy",
    10,
    "2024-05-17T10:00:00+08:00",
    exemption={"clause": "6.1", "reference": "EV-404"},
    expect=(BLOCK, None, "2024-05-17"),
)
order(
    "evidence clause must match the claim",
    "O-25",
    "A1",
    "buy",
    10,
    "2024-05-17T10:01:00+08:00",
    exemption={"clause": "6.2", "reference": "EV-1"},
    expect=(BLOCK, None, "2024-05-17"),
)
order(
    "evidence side must match (and no 6.6 holdings of 600002)",
    "O-26",
    "A1",
    "sell",
    10,
    "2024-05-17T10:02:00+08:00",
    security="600002",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(BLOCK, None, "2024-05-17"),
)
order(
    "evidence security must match",
    "O-27",
    "A1",
    "buy",
    10,
    "2024-05-17T10:03:00+08:00",
    security="600001",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(BLOCK, None, "2024-05-17"),
)
order(
    "evidence is valid only to 2024-06-30",
    "O-28",
    "A1",
    "buy",
    10,
    "2024-07-01T10:00:00+08:00",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(BLOCK, None, "2024-07-01"),
)
evidence(
    "EV-2",
    "A2",
    "6.5",
    "sell",
    10000,
    security=None,
    disclosed="2024-01-15",
    valid=("2024-05-01", "2024-12-31"),
)
evidence(
    "EV-3",
    "A2",
    "6.5",
    "sell",
    10000,
    security=None,
    disclosed="2024-05-13",
    valid=("2024-05-01", "2024-12-31"),
)
evidence(
    "EV-4",
    "A2",
    "6.3",
    "sell",
    10000,
    security=None,
    revoked=True,
    valid=("2024-05-01", "2024-12-31"),
)
evidence("EV-5", "A2", "6.4", "sell", 1000, security=None, valid=("2024-05-01", "2024-12-31"))
order(
    "6.5 disclosed before the ban, any security",
    "O-30",
    "A2",
    "sell",
    2000,
    "2024-05-20T10:00:00+08:00",
    security="600036",
    exemption={"clause": "6.5", "reference": "EV-2"},
    expect=(EXEMPT, "6.5", "2024-05-20"),
)
order(
    "6.5 disclosed on the start day is not before it",
    "O-31",
    "A2",
    "sell",
    100,
    "2024-05-20T10:01:00+08:00",
    security="600036",
    exemption={"clause": "6.5", "reference": "EV-3"},
    expect=(BLOCK, None, "2024-05-20"),
)
order(
    "6.3 revoked evidence",
    "O-32",
    "A2",
    "sell",
    100,
    "2024-05-20T10:02:00+08:00",
    security="600036",
    exemption={"clause": "6.3", "reference": "EV-4"},
    expect=(BLOCK, None, "2024-05-20"),
)
order(
    "6.4 credit-risk unwinding on the margin account",
    "O-33",
    "A2",
    "sell",
    1000,
    "2024-05-20T10:03:00+08:00",
    security="601318",
    exemption={"clause": "6.4", "reference": "EV-5"},
    expect=(EXEMPT, "6.4", "2024-05-20"),
)
holding("A2", "601988", 800, "2024-05-09")
order(
    "a failed claim on a sell still gets 6.6 when holdings cover it",
    "O-34",
    "A2",
    "sell",
    500,
    "2024-05-20T10:04:00+08:00",
    security="601988",
    exemption={"clause": "6.4", "reference": "EV-5"},
    expect=(EXEMPT, "6.6", "2024-05-20"),
)

# --- R5: executions --------------------------------------------------------------------------
execution(
    "a fill on a blocked order is a breach",
    "O-02",
    "A1",
    "buy",
    "fill",
    1000,
    "2024-05-13T09:31:05+08:00",
    breach=True,
)
execution(
    "a second fill on it is not a second violation",
    "O-02",
    "A1",
    "buy",
    "fill",
    10,
    "2024-05-13T09:31:06+08:00",
)
execution(
    "a fill of an order never decided is a breach",
    "O-X1",
    "A1",
    "buy",
    "fill",
    100,
    "2024-05-21T10:00:00+08:00",
    breach=True,
)
execution(
    "an undecided sell that 6.6 covers at execution time is no breach",
    "O-X2",
    "A2",
    "sell",
    "fill",
    300,
    "2024-05-21T10:00:00+08:00",
    security="601988",
)
execution(
    "fills on unlinked accounts are no concern",
    "O-X3",
    "A9",
    "buy",
    "fill",
    100,
    "2024-05-21T10:00:00+08:00",
)
order(
    "6.6: 800 held, 300 used by the undecided fill, O-34's 500 lapsed unfilled: 500 < 501",
    "O-35",
    "A2",
    "sell",
    501,
    "2024-05-21T10:01:00+08:00",
    security="601988",
    expect=(BLOCK, None, "2024-05-21"),
)
order(
    "6.1 again in a new session: 1000 used, 4000 left (O-22 lapsed)",
    "O-36",
    "A1",
    "buy",
    4000,
    "2024-05-21T10:02:00+08:00",
    exemption={"clause": "6.1", "reference": "EV-1"},
    expect=(EXEMPT, "6.1", "2024-05-21"),
)
execution(
    "fill beyond O-36's reservation, and 6.1 has no quota left",
    "O-36",
    "A1",
    "buy",
    "fill",
    4500,
    "2024-05-21T10:02:30+08:00",
    breach=True,
)

# --- R1: validation ---------------------------------------------------------------------------
ban(
    "Art. 7: trading measure over 5 years",
    "CSRC-R1",
    "P9",
    [{"kind": "trading", "years": 6}],
    "2024-05-10",
    reject=True,
)
ban(
    "Art. 7: trading measure for life",
    "CSRC-R2",
    "P9",
    [{"kind": "trading", "lifetime": True}],
    "2024-05-10",
    reject=True,
)
ban(
    "Art. 7: trading measure under 1 month",
    "CSRC-R3",
    "P9",
    [{"kind": "trading", "years": 0, "months": 0}],
    "2024-05-10",
    reject=True,
)
ban(
    "Art. 7, 9: business 2 years without mitigation",
    "CSRC-R4",
    "P9",
    [{"kind": "business", "years": 2}],
    "2024-05-10",
    reject=True,
)
ban(
    "Art. 7: lifetime business without ground",
    "CSRC-R5",
    "P9",
    [{"kind": "business", "lifetime": True}],
    "2024-05-10",
    reject=True,
)
ban(
    "Art. 7: business over 10 years",
    "CSRC-R6",
    "P9",
    [{"kind": "business", "years": 11}],
    "2024-05-10",
    reject=True,
)
ban(
    "Art. 17: 2006 provisions had no trading measure",
    "CSRC-R7",
    "P9",
    [{"kind": "trading", "years": 1}],
    "2024-05-10",
    ended="2021-07-18",
    reject=True,
)
ban("Art. 4: no measures", "CSRC-R8", "P9", [], "2024-05-10", reject=True)
ban("Art. 16(4): not served", "CSRC-R9", "P9", [{"kind": "trading", "years": 1}], None, reject=True)
ban(
    "Art. 12: revoke needs effective_on",
    "CSRC-1",
    "P1",
    T5,
    "2024-05-10",
    version=9,
    action="revoke",
    reject=True,
)
ban(
    "Art. 7, 9: business 2 years mitigated is valid",
    "CSRC-B1",
    "P3",
    [{"kind": "business", "years": 2}],
    "2024-05-10",
    mitigated=True,
)
ban(
    "Art. 17: 2006 rules, business 15 years taken as stated",
    "CSRC-B2",
    "P3",
    [{"kind": "business", "years": 15}],
    "2024-05-10",
    ended="2020-12-31",
)
ban(
    "Art. 16(5): bounds inclusive, business exactly 3 years",
    "CSRC-B3",
    "P3",
    [{"kind": "business", "years": 3}],
    "2024-05-10",
)
link("A3", "P3")
order(
    "a business measure does not restrict trading",
    "O-40",
    "A3",
    "buy",
    100,
    "2024-05-13T10:00:00+08:00",
    expect=(ALLOW, None, "2024-05-13"),
)
put("R7 junk on the orders topic", "orders", "A3", raw='{"order_id": ')
rejected_lines.append(len(lines))
put("R7 a line for an unknown topic", "trades", "A3", {"x": 1})
rejected_lines.append(len(lines))

# --- R1 lifecycle: versions, amend before issue, revoke ----------------------------------------
ban(
    "amend v2 arrives before its issue: held",
    "CSRC-4",
    "P4",
    [{"kind": "trading", "months": 1}],
    "2024-05-10",
    version=2,
    action="amend",
)
ban(
    "issue v1 arrives: the held amend (1 month) applies",
    "CSRC-4",
    "P4",
    [{"kind": "trading", "years": 2}],
    "2024-05-10",
)
ban(
    "a repeated issue v1 is ignored",
    "CSRC-4",
    "P4",
    [{"kind": "trading", "years": 2}],
    "2024-05-10",
)
link("A4", "P4")
order(
    "1 month from 2024-05-13: last banned session 2024-06-12",
    "O-41",
    "A4",
    "buy",
    100,
    "2024-06-12T10:00:00+08:00",
    expect=(BLOCK, None, "2024-06-12"),
)
order(
    "R2 the anniversary day 2024-06-13 is free",
    "O-42",
    "A4",
    "buy",
    100,
    "2024-06-13T10:00:00+08:00",
    expect=(ALLOW, None, "2024-06-13"),
)
ban("P5 banned 1 year", "CSRC-5", "P5", [{"kind": "trading", "years": 1}], "2024-05-10")
ban(
    "revoke v2 effective 2024-06-03",
    "CSRC-5",
    "P5",
    [],
    None,
    version=2,
    action="revoke",
    effective_on="2024-06-03",
)
ban(
    "a stale amend (v2 again) is ignored",
    "CSRC-5",
    "P5",
    [{"kind": "trading", "years": 5}],
    "2024-05-10",
    version=2,
    action="amend",
)
link("A5", "P5")
order(
    "before the revocation's effective day: still banned",
    "O-43",
    "A5",
    "buy",
    100,
    "2024-05-31T10:00:00+08:00",
    expect=(BLOCK, None, "2024-05-31"),
)
order(
    "Art. 12 revoked: free from effective_on",
    "O-44",
    "A5",
    "buy",
    100,
    "2024-06-03T10:00:00+08:00",
    expect=(ALLOW, None, "2024-06-03"),
)

# --- R2/R3 with holidays ------------------------------------------------------------------------
ban(
    "served Mon 2024-09-30: National Day, trading starts 2024-10-08",
    "CSRC-6",
    "P6",
    [{"kind": "trading", "years": 1}],
    "2024-09-30",
)
link("A6", "P6")
order(
    "served day's own session is free",
    "O-50",
    "A6",
    "buy",
    100,
    "2024-09-30T10:00:00+08:00",
    expect=(ALLOW, None, "2024-09-30"),
)
order(
    "after the close on 09-30: session 2024-10-08, banned",
    "O-51",
    "A6",
    "buy",
    100,
    "2024-09-30T16:00:00+08:00",
    expect=(BLOCK, None, "2024-10-08"),
)
order(
    "during the holiday: session 2024-10-08",
    "O-52",
    "A6",
    "buy",
    100,
    "2024-10-03T10:00:00+08:00",
    expect=(BLOCK, None, "2024-10-08"),
)
order(
    "make-up working Saturday 2024-10-12 is no session: 10-14",
    "O-53",
    "A6",
    "buy",
    100,
    "2024-10-12T10:00:00+08:00",
    expect=(BLOCK, None, "2024-10-14"),
)
ban(
    "served Mon 2025-01-27: Spring Festival, trading starts 2025-02-05",
    "CSRC-7",
    "P7",
    [{"kind": "trading", "months": 6}],
    "2025-01-27",
)
link("A7", "P7")
order(
    "during Spring Festival: session 2025-02-05",
    "O-54",
    "A7",
    "buy",
    100,
    "2025-02-04T10:00:00+08:00",
    expect=(BLOCK, None, "2025-02-05"),
)
order(
    "6 months from 2025-02-05: 2025-08-05 is free",
    "O-55",
    "A7",
    "buy",
    100,
    "2025-08-05T10:00:00+08:00",
    expect=(ALLOW, None, "2025-08-05"),
)
ban(
    "served on the last known day 2026-12-31: start estimated (2027-01-01 weekday)",
    "CSRC-8",
    "P8",
    [{"kind": "trading", "years": 5}],
    "2026-12-31",
)
link("A8", "P8")
order(
    "2027 is not published: the session is estimated, still banned",
    "O-56",
    "A8",
    "buy",
    100,
    "2027-01-04T10:00:00+08:00",
    expect=(BLOCK, None, "2027-01-04"),
)
order(
    "a 5-year measure reaches past the calendar: 2031-12-31 estimated, banned",
    "O-57",
    "A8",
    "buy",
    100,
    "2031-12-31T10:00:00+08:00",
    expect=(BLOCK, None, "2031-12-31"),
)

# --- R6: event time, late bans, late links --------------------------------------------------
link("A10", "P10")
order(
    "R6 decided before P10's ban arrives: allowed",
    "O-60",
    "A10",
    "buy",
    500,
    "2024-05-13T10:00:00+08:00",
    expect=(ALLOW, None, "2024-05-13"),
)
ban(
    "P10's ban arrives after O-60 was decided",
    "CSRC-10",
    "P10",
    [{"kind": "trading", "years": 1}],
    "2024-05-10",
)
order(
    "R6 the next order of P10 is blocked",
    "O-61",
    "A10",
    "buy",
    500,
    "2024-05-13T10:05:00+08:00",
    expect=(BLOCK, None, "2024-05-13"),
)
execution(
    "R5 a fill within O-60's allowed quantity is covered by its decision",
    "O-60",
    "A10",
    "buy",
    "fill",
    500,
    "2024-05-13T10:06:00+08:00",
)
execution(
    "R5 beyond it, under the ban, is a breach",
    "O-60",
    "A10",
    "buy",
    "fill",
    1,
    "2024-05-13T10:06:01+08:00",
    breach=True,
)
order(
    "an account linked later is not covered before its link",
    "O-62",
    "A11",
    "buy",
    100,
    "2024-05-13T10:00:00+08:00",
    expect=(ALLOW, None, "2024-05-13"),
)
link("A11", "P1")
order(
    "...and covered from the moment it is linked",
    "O-63",
    "A11",
    "buy",
    100,
    "2024-05-13T10:01:00+08:00",
    expect=(BLOCK, None, "2024-05-13"),
)

# --- invalid orders fail closed --------------------------------------------------------------
for oid, case, patch in [
    ("O-70", "quantity as a string is a wrong type", {"quantity": "1000"}),
    ("O-71", "timestamp without an offset", {"entered_at": "2024-05-13T10:00:00"}),
    ("O-72", "price as a JSON number", {"price": 10.5}),
    ("O-73", "unknown exchange", {"exchange": "XNYS"}),
    ("O-74", "zero quantity", {"quantity": 0}),
]:
    value = {
        "order_id": oid,
        "account_id": "A9",
        "exchange": "XSHG",
        "security": "600000",
        "side": "buy",
        "quantity": 100,
        "price": "10.50",
        "entered_at": "2024-05-13T10:00:00+08:00",
        "broker": "B001",
        **patch,
    }
    put(f"invalid order: {case}", "orders", "A9", value)
    rejected_lines.append(len(lines))
    decisions[oid] = ["block", None, None]
put(
    "invalid order: key is not the account_id",
    "orders",
    "A1",
    {
        "order_id": "O-75",
        "account_id": "A9",
        "exchange": "XSHG",
        "security": "600000",
        "side": "buy",
        "quantity": 100,
        "price": "10.50",
        "entered_at": "2024-05-13T10:00:00+08:00",
        "broker": "B001",
    },
)
rejected_lines.append(len(lines))
decisions["O-75"] = ["block", None, None]
put(
    "duplicate order_id on a tracked account",
    "orders",
    "A1",
    {
        "order_id": "O-36",
        "account_id": "A1",
        "exchange": "XSHG",
        "security": "600000",
        "side": "buy",
        "quantity": 1,
        "price": "10.50",
        "entered_at": "2024-05-22T10:00:00+08:00",
        "broker": "B001",
    },
)
rejected_lines.append(len(lines))

# ---- R8: trading under another's name -----------------------------------------------------------
# PX banned from the next trading day after 2024-05-10 (Mon 13 May). PX owns AX0; NX1..NX4 belong
# to persons without a ban. Device 00:1B:44:11:3A:80 is PX's.
ban(
    "R8: PX banned, trading 5 years",
    "CSRC-PX",
    "PX",
    [{"kind": "trading", "years": 5}],
    "2024-05-10",
)
link("AX0", "PX")
for _n in range(1, 5):
    link(f"NX{_n}", f"QX{_n}")
PX_DEVICE = "00:1B:44:11:3A:80"
order(
    "R8 banned use: PX's own account from PX's device (blocked, as any order of PX)",
    "O-R8-01", "AX0", "buy", 100, "2024-05-14T10:00:00+08:00",
    terminal={"ip": "10.8.0.1", "mac": PX_DEVICE},
    expect=("block", None, "2024-05-14"),
)  # fmt: skip
order(
    "R8 foreign use, same session, MAC in lower case: allowed, and a suspicion for (NX1, PX)",
    "O-R8-02", "NX1", "buy", 100, "2024-05-14T10:30:00+08:00",
    terminal={"ip": "10.8.0.2", "mac": PX_DEVICE.lower()},
    expect=("allow", None, "2024-05-14"),
)  # fmt: skip
violations.append("suspected_proxy_trading:NX1:PX:2024-05-14")
order(
    "R8 placeholder MAC identifies no device (PX's order)",
    "O-R8-03", "AX0", "buy", 100, "2024-05-15T10:00:00+08:00",
    terminal={"ip": "10.8.0.1", "mac": "00:00:00:00:00:00"},
    expect=("block", None, "2024-05-15"),
)  # fmt: skip
order(
    "R8 the same placeholder on another account: no suspicion",
    "O-R8-04", "NX2", "buy", 100, "2024-05-15T10:05:00+08:00",
    terminal={"ip": "10.8.0.1", "mac": "00:00:00:00:00:00"},
    expect=("allow", None, "2024-05-15"),
)  # fmt: skip
order(
    "R8 the same IP without a MAC: an IP alone identifies no device",
    "O-R8-05", "NX3", "buy", 100, "2024-05-15T10:10:00+08:00",
    terminal={"ip": "10.8.0.1"},
    expect=("allow", None, "2024-05-15"),
)  # fmt: skip
order(
    "R8 PX's device 26 trading sessions after PX's use (13 in May after the 14th, 13 in June to "
    "the 20th; 10 June closed): more than 20 apart, no suspicion",
    "O-R8-06", "NX4", "buy", 100, "2024-06-20T10:00:00+08:00",
    terminal={"ip": "10.8.0.4", "mac": PX_DEVICE},
    expect=("allow", None, "2024-06-20"),
)  # fmt: skip
put(
    "R8 an analyst confirmed the suspicion: NX1 is controlled by PX",
    "accounts",
    "NX1",
    {"account_id": "NX1", "person_id": "PX", "kind": "controlled",
     "reference": "suspected_proxy_trading:NX1:PX:2024-05-14"},
)  # fmt: skip
order(
    "R8 from then on NX1's orders are decided under PX's measures: blocked",
    "O-R8-07", "NX1", "buy", 100, "2024-06-21T10:00:00+08:00",
    terminal={"ip": "10.8.0.7", "mac": "00:1B:44:11:3A:87"},
    expect=("block", None, "2024-06-21"),
)  # fmt: skip
holding("NX1", "600000", 5000, "2024-05-01")
order(
    "R8 NX1's holdings before PX's ban are not PX's: 6.6 does not apply through the link",
    "O-R8-08", "NX1", "sell", 100, "2024-06-21T10:05:00+08:00",
    terminal={"ip": "10.8.0.7", "mac": "00:1B:44:11:3A:87"},
    expect=("block", None, "2024-06-21"),
)  # fmt: skip
put(
    "R8 the analyst revoked the link",
    "accounts",
    "NX1",
    {"account_id": "NX1", "person_id": "PX", "kind": "controlled",
     "reference": "suspected_proxy_trading:NX1:PX:2024-05-14", "revoked": True},
)  # fmt: skip
order(
    "R8 after the revocation NX1 is its owner's again: allowed; and since PX no longer controls "
    "it, this use of the device PX used for NX1 on 21 June (1 session before) is a foreign use",
    "O-R8-09", "NX1", "buy", 100, "2024-06-24T10:00:00+08:00",
    terminal={"ip": "10.8.0.7", "mac": "00:1B:44:11:3A:87"},
    expect=("allow", None, "2024-06-24"),
)  # fmt: skip
violations.append("suspected_proxy_trading:NX1:PX:2024-06-24")

with (HERE / "rules.jsonl").open("w", encoding="utf-8") as f:
    for line in lines:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
expected = {
    "decisions": decisions,
    "violations": sorted(violations),
    "rejected_lines": sorted(rejected_lines),
}
(HERE / "rules.expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
print(f"{len(lines)} lines, {len(decisions)} orders, {len(violations)} violations")
