"""What the query API computes: register and history, the dry run, account views, paging."""

from __future__ import annotations

from datetime import date

import pytest

from marketban.domain.models import Order
from marketban.service import queries
from tests.unit.helpers import ban, feed, link, new_engine, order, verdicts


def engine_with_ban(*extra):
    engine = new_engine()
    feed(engine, ("bans", ban()), ("accounts", link()), *extra)
    return engine


def test_register_keeps_every_applied_version_with_its_action() -> None:
    engine = new_engine()
    feed(
        engine,
        ("bans", ban(measures=[{"kind": "trading", "years": 2}])),
        ("bans", ban(version=2, action="amend", measures=[{"kind": "trading", "years": 3}])),
        ("bans", ban(version=2, action="amend", measures=[{"kind": "trading", "years": 4}])),
        ("bans", ban(version=3, action="revoke", effective_on="2025-01-02")),
    )
    detail = queries.register_detail(engine.state.persons.decision("D1"))
    assert [(c.version, c.action) for c in detail.history] == [
        (1, "issue"),
        (2, "amend"),
        (3, "revoke"),
    ]  # the repeated version 2 is not a version
    assert detail.history[1].measures[0].years == 3
    assert detail.history[2].effective_on == date(2025, 1, 2)
    assert detail.revoked_on == date(2025, 1, 2)
    assert detail.person_name == "张三"
    assert detail.issuer == "CSRC"
    assert detail.windows[0].end == date(2025, 1, 2)


def test_register_history_includes_an_amend_held_until_its_issue() -> None:
    engine = new_engine()
    feed(
        engine,
        ("bans", ban(version=2, action="amend", measures=[{"kind": "trading", "years": 1}])),
        ("bans", ban()),
    )
    detail = queries.register_detail(engine.state.persons.decision("D1"))
    assert [(c.version, c.action) for c in detail.history] == [(1, "issue"), (2, "amend")]


def test_register_pages_newest_served_first_and_filters_by_person_and_text() -> None:
    engine = new_engine()
    feed(
        engine,
        ("bans", ban("D1", "P1", served_on="2024-05-10")),
        ("bans", ban("D2", "P2", served_on="2024-06-10")),
        ("bans", ban("D3", "P1", served_on="2024-04-10")),
    )
    records = engine.state.persons.decisions()
    page = queries.register_page(records, 0, 2)
    assert [e.decision_id for e in page.items] == ["D2", "D1"]
    assert page.total == 3
    assert [e.decision_id for e in queries.register_page(records, 2, 2).items] == ["D3"]
    only_p1 = queries.register_page(records, 0, 10, person_id="P1")
    assert [e.decision_id for e in only_p1.items] == ["D1", "D3"]
    by_name = queries.register_page(records, 0, 10, text="张")
    assert by_name.total == 3
    assert queries.register_page(records, 0, 10, text="d2").total == 1
    assert queries.register_page(records, 0, 10, text="nobody").total == 0


def test_dry_run_gives_the_decision_a_real_order_would_get_and_reserves_nothing() -> None:
    engine = engine_with_ban(
        (
            "holdings",
            {"account_id": "A1", "security": "600000", "quantity": 300, "as_of": "2024-05-10"},
        )
    )
    sale = Order.model_validate(order("CHECK", side="sell", qty=300))
    for _ in range(3):  # a dry run three times over: the holdings are still all there
        outputs = engine.dry_run(sale)
        assert outputs[0][2].verdict == "allow_exempt"
        assert outputs[0][2].clause == "6.6"
    assert "CHECK" not in engine.state.accounts["A1"].orders
    # the real order with the same id is still decided, and it takes the quota
    real = feed(engine, ("orders", order("CHECK", side="sell", qty=300)))
    assert verdicts(real) == {"CHECK": "allow_exempt"}
    after = engine.dry_run(Order.model_validate(order("NEXT", side="sell", qty=1)))
    assert after[0][2].verdict == "block"
    assert after[1][0] == "violations"


def test_dry_run_of_an_order_id_already_decided_is_a_duplicate() -> None:
    engine = engine_with_ban()
    feed(engine, ("orders", order("O1")))
    outputs = engine.dry_run(Order.model_validate(order("O1")))
    assert outputs[0][0] == "rejected"
    assert "duplicate order_id" in outputs[0][2].error


def test_account_view_lists_measures_now_and_later_and_the_quotas_left() -> None:
    evidence = {
        "evidence_id": "EV-1", "clause": "6.1", "account_id": "A1", "security": "600000",
        "side": "buy", "max_quantity": 500, "valid_from": "2024-05-13",
        "valid_until": "2024-06-30", "issued_by": "CSRC", "disclosed_on": None, "revoked": False,
    }  # fmt: skip
    engine = new_engine()
    feed(
        engine,
        ("bans", ban("D1", measures=[{"kind": "trading", "years": 1}])),
        ("bans", ban("D2", served_on="2026-01-05", measures=[{"kind": "trading", "years": 1}])),
        ("accounts", link()),
        ("evidence", evidence),
        ("orders", order("O1", exemption={"clause": "6.1", "reference": "EV-1"}, qty=200)),
        ("executions", {"order_id": "O1", "account_id": "A1", "security": "600000",
                        "side": "buy", "status": "fill", "quantity": 150,
                        "executed_at": "2024-05-13T10:01:00+08:00", "broker": "B001"}),
    )  # fmt: skip
    st = engine.state
    view = queries.account_view(
        "A1", st.links["A1"], st.persons, st.accounts["A1"],
        today=date(2024, 5, 13), session=date(2024, 5, 13),
    )  # fmt: skip
    assert [(m.decision_id, m.status) for m in view.measures] == [
        ("D1", "active"),
        ("D2", "upcoming"),
    ]
    quota = view.quotas[0]
    assert (quota.evidence_id, quota.used, quota.reserved, quota.remaining) == (
        "EV-1",
        150,
        50,
        300,
    )
    later = queries.account_view(
        "A1", st.links["A1"], st.persons, st.accounts["A1"],
        today=date(2025, 6, 1), session=date(2025, 6, 3),
    )  # fmt: skip
    assert [m.decision_id for m in later.measures] == ["D2"]  # D1 ended 2025-05-13
    assert later.quotas[0].reserved == 0  # an open reservation lapses with its session


def test_account_view_of_an_account_with_no_person() -> None:
    engine = new_engine()
    view = queries.account_view(
        "A9", None, engine.state.persons, None, today=date(2024, 5, 13), session=date(2024, 5, 13)
    )
    assert view.person_id is None
    assert view.measures == []
    assert view.quotas == []


@pytest.mark.parametrize(("offset", "limit", "expected"), [(0, 2, [0, 1]), (4, 2, [4]), (9, 3, [])])
def test_page_of_cuts_at_offset_and_limit(offset, limit, expected) -> None:
    page = queries.page_of(list(range(5)), offset, limit)
    assert page.items == expected
    assert page.total == 5
