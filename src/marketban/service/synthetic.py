"""A deterministic synthetic market in replay format (spec R7), for measurement and demos.

Mostly orders from accounts nobody is banned on, as in real flow; a share from banned persons'
linked accounts, with evidence, pre-ban holdings, executions and a few malformed messages.
Every order carries a terminal: an account's own device as a rule, a branch office's shared
terminal now and then, and for a few banned persons a nominee's account (linked to someone
else) trading from the banned person's own device — what R8 is there to notice.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta

import orjson

from marketban.domain.calendars import CST

_SECURITIES = [f"6{n:05d}" for n in range(0, 2000, 7)] + [f"00{n:04d}" for n in range(1, 900, 5)]


_NL = orjson.OPT_APPEND_NEWLINE
_NOMINEE_EVERY = 50  # one banned person in this many trades through a nominee's account too
_NOMINEES_AT_LEAST = 3  # and the first few, so that a small demo market has some
_BRANCH_TERMINALS = 20
_BRANCH_SHARE = 0.05  # orders entered on a branch office's shared terminal
_BROKEN_EVERY = 50_000  # one malformed order line per this many orders


#: The order-flow topics of the market; the others carry its reference data.
FLOW_TOPICS = frozenset({"orders", "executions"})


def messages(lines: Iterable[bytes]) -> Iterator[tuple[str, str, bytes]]:
    """The (topic, key, payload bytes) each generated line carries."""
    for line in lines:
        record = orjson.loads(line)
        payload = record["raw"].encode() if "raw" in record else orjson.dumps(record["value"])
        yield record["topic"], record["key"], payload


def _device(kind: int, n: int) -> str:
    """A locally administered MAC (02:…): ``kind`` tells persons, accounts and branches apart."""
    return f"02:{kind:02X}:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}:01"


def _terminal(rng: random.Random, own: str, n: int) -> dict[str, str]:
    if rng.random() < _BRANCH_SHARE:
        branch = rng.randrange(_BRANCH_TERMINALS)
        return {"ip": f"10.200.0.{branch + 1}", "mac": _device(0xBB, branch)}
    return {"ip": f"10.{n >> 16 & 0xFF}.{n >> 8 & 0xFF}.{n & 0xFF}", "mac": own}


def _line(topic: str, key: str, value: dict[str, object]) -> bytes:
    return orjson.dumps({"topic": topic, "key": key, "value": value}, option=_NL)


def generate(
    orders: int,
    *,
    banned_persons: int = 1000,
    accounts_per_person: int = 3,
    other_accounts: int = 1_000_000,
    banned_share: float = 0.01,
    seed: int = 7,
    first_day: date = date(2024, 5, 13),
    orders_per_day: int = 200_000,
    order_prefix: str = "SO",
    broken_every: int = _BROKEN_EVERY,
) -> Iterator[bytes]:
    """Yield replay lines: reference data first, then ``orders`` orders over consecutive days."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    banned_accounts: list[str] = []
    held: dict[str, list[str]] = {}
    #: Account -> the device it trades from: a banned person's accounts, and a nominee's, share it.
    devices: dict[str, tuple[str, int]] = {}
    nominees: list[str] = []
    for p in range(banned_persons):
        did = f"CSRC-SYN-{p:05d}"
        years = rng.choice([1, 2, 3, 5])
        yield _line(
            "bans",
            did,
            {
                "decision_id": did,
                "version": 1,
                "action": "issue",
                "issuer": "CSRC",
                "person_id": f"SP{p:05d}",
                "person_name": "合成",
                "served_on": "2024-05-10",
                "measures": [
                    {"kind": "trading", "years": years},
                    {"kind": "business", "years": 10},
                ],
                "violation_ended_on": "2023-12-31",
                "mitigated": False,
                "effective_on": None,
            },
        )
        for a in range(accounts_per_person):
            acct = f"SB{p:05d}{a}"
            banned_accounts.append(acct)
            yield _line(
                "accounts",
                acct,
                {
                    "account_id": acct,
                    "person_id": f"SP{p:05d}",
                    "kind": "credit" if a == 1 else "cash",
                },
            )
            held[acct] = rng.sample(_SECURITIES, 2)
            devices[acct] = (_device(0x5B, p), p)
            for sec in held[acct]:
                yield _line(
                    "holdings",
                    acct,
                    {
                        "account_id": acct,
                        "security": sec,
                        "quantity": rng.randrange(1000, 50000, 100),
                        "as_of": "2024-05-10",
                    },
                )
            if rng.random() < 0.2:  # noqa: PLR2004
                clause = rng.choice(["6.1", "6.2", "6.3", "6.4", "6.7"])
                yield _line(
                    "evidence",
                    acct,
                    {
                        "evidence_id": f"EV-{acct}",
                        "clause": clause,
                        "account_id": acct,
                        "security": None,
                        "side": "buy" if clause == "6.1" else "sell",
                        "max_quantity": 20000,
                        "valid_from": "2024-05-01",
                        "valid_until": "2025-12-31",
                        "issued_by": "CSRC",
                        "disclosed_on": None,
                        "revoked": False,
                    },
                )
        if p % _NOMINEE_EVERY == 0 or p < _NOMINEES_AT_LEAST:
            nominee = f"SN{p:05d}"
            nominees.append(nominee)
            devices[nominee] = devices[f"SB{p:05d}0"]
            yield _line(
                "accounts",
                nominee,
                {"account_id": nominee, "person_id": f"NP{p:05d}", "kind": "cash"},
            )
    day, day_orders = first_day, 0
    clock = datetime.combine(day, datetime.min.time(), CST) + timedelta(hours=9, minutes=30)
    for i in range(orders):
        if day_orders == orders_per_day:
            day += timedelta(days=1 if day.weekday() < 4 else 3)  # noqa: PLR2004
            day_orders = 0
            clock = datetime.combine(day, datetime.min.time(), CST) + timedelta(hours=9, minutes=30)
        day_orders += 1
        clock += timedelta(microseconds=19_000)  # ~200k orders over a 4-hour session
        banned = rng.random() < banned_share and banned_accounts
        other = rng.randrange(other_accounts)
        acct = rng.choice(banned_accounts) if banned else f"A{other:07d}"
        if not banned and nominees and rng.random() < banned_share / 4:
            acct = rng.choice(nominees)
        oid = f"{order_prefix}{i:09d}"
        side = "sell" if rng.random() < 0.5 else "buy"  # noqa: PLR2004
        # A banned person mostly sells what they held before the ban (Art. 6(6)).
        holds = banned and side == "sell" and rng.random() < 0.7  # noqa: PLR2004
        security = rng.choice(held[acct]) if holds else rng.choice(_SECURITIES)
        value: dict[str, object] = {
            "order_id": oid,
            "account_id": acct,
            "exchange": rng.choice(["XSHG", "XSHE"]),
            "security": security,
            "side": side,
            "quantity": rng.randrange(100, 5000, 100),
            "price": f"{rng.uniform(2, 80):.2f}",
            "entered_at": clock.isoformat(timespec="milliseconds"),
            "broker": f"B{rng.randrange(40):03d}",
        }
        own, n = devices.get(acct) or (_device(0xAC, other), other)
        value["terminal"] = _terminal(rng, own, n)
        if banned and rng.random() < 0.3:  # noqa: PLR2004
            value["exemption"] = {
                "clause": rng.choice(["6.1", "6.4", "6.6"]),
                "reference": f"EV-{acct}",
            }
        if i % broken_every == broken_every - 1:
            yield orjson.dumps(
                {"topic": "orders", "key": acct, "raw": '{"order_id": "broken'}, option=_NL
            )
        yield _line("orders", acct, value)
        if banned and rng.random() < 0.5:  # noqa: PLR2004
            yield _line(
                "executions",
                acct,
                {
                    "order_id": oid,
                    "account_id": acct,
                    "security": value["security"],
                    "side": side,
                    "status": rng.choice(["fill", "cancel"]),
                    "quantity": 100,
                    "executed_at": (clock + timedelta(seconds=2)).isoformat(),
                    "broker": value["broker"],
                },
            )
