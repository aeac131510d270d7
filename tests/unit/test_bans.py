"""R1 validation (Art. 4, 7, 9, 12, 16, 17), lifecycle and R2 windows."""

from __future__ import annotations

from datetime import date

import pytest

from marketban.domain.bans import BanView, BanWindows, Window
from tests.unit.helpers import ban, feed, link, new_engine, order, verdicts


def rejections(outputs):
    return [v.error for t, _, v in outputs if t == "rejected"]


@pytest.mark.parametrize(
    ("measures", "kwargs", "article"),
    [
        ([], {}, "Art. 4"),
        ([{"kind": "trading", "years": 1}], {"served_on": None}, "Art. 16(4)"),
        ([{"kind": "trading", "years": 5, "months": 1}], {}, "Art. 7 (last para.)"),
        ([{"kind": "trading", "lifetime": True}], {}, "cannot be for life"),
        ([{"kind": "trading", "months": 0}], {}, "at least 1 month"),
        ([{"kind": "business", "years": 10, "months": 1}], {}, "at most 10 years"),
        ([{"kind": "business", "years": 2, "months": 11}], {}, "Art. 7, 9"),
        ([{"kind": "business", "lifetime": True}], {}, "lifetime_ground"),
        ([{"kind": "business", "lifetime": True, "lifetime_ground": 9}], {}, "lifetime_ground"),
        ([{"kind": "trading", "years": 1}], {"ended": "2021-07-18"}, "Art. 17"),
    ],
)
def test_r1_invalid_decisions_are_rejected_naming_the_article(measures, kwargs, article) -> None:
    engine = new_engine()
    out = feed(engine, ("bans", ban(measures=measures, **kwargs)))
    errors = rejections(out)
    assert len(errors) == 1
    assert article in errors[0]
    # and the invalid decision blocks nothing
    assert verdicts(feed(engine, ("accounts", link()), ("orders", order("O1")))) == {"O1": "allow"}


@pytest.mark.parametrize(
    ("measures", "kwargs"),
    [
        ([{"kind": "trading", "years": 5}], {}),  # Art. 16(5): bounds are inclusive
        ([{"kind": "trading", "months": 1}], {}),
        ([{"kind": "business", "years": 10}], {}),
        ([{"kind": "business", "years": 3}], {}),
        ([{"kind": "business", "months": 6}], {"mitigated": True}),  # Art. 9/10 减轻
        ([{"kind": "business", "lifetime": True, "lifetime_ground": 1}], {}),
        ([{"kind": "business", "lifetime": True, "lifetime_ground": 8}], {}),
        ([{"kind": "business", "years": 20}], {"ended": "2021-07-18"}),  # Art. 17: as stated
        ([{"kind": "trading", "years": 1}], {"ended": "2021-07-19"}),  # in force that day
        ([{"kind": "trading", "years": 1}], {"ended": None}),  # null: 2021 provisions
    ],
)
def test_r1_valid_decisions_are_accepted(measures, kwargs) -> None:
    assert rejections(feed(new_engine(), ("bans", ban(measures=measures, **kwargs)))) == []


def test_r1_repeated_and_stale_events_change_nothing() -> None:
    engine = new_engine()
    feed(engine, ("bans", ban(measures=[{"kind": "trading", "years": 1}])), ("accounts", link()))
    out = feed(
        engine,
        ("bans", ban(measures=[{"kind": "trading", "years": 1}])),
        ("bans", ban(version=1, action="revoke", effective_on="2024-05-01")),
    )
    assert out == []
    assert verdicts(feed(engine, ("orders", order("O1")))) == {"O1": "block"}


def test_r1_amend_and_revoke_before_the_issue_are_held_and_applied_in_version_order() -> None:
    engine = new_engine()
    held = feed(
        engine,
        ("bans", ban(version=3, action="revoke", effective_on="2024-06-03")),
        ("bans", ban(version=2, action="amend", measures=[{"kind": "trading", "years": 2}])),
        ("accounts", link()),
        ("orders", order("O1")),
    )
    assert verdicts(held) == {"O1": "allow"}  # nothing applies before the issue
    feed(engine, ("bans", ban(version=1)))
    got = verdicts(
        feed(
            engine,
            ("orders", order("O2", at="2024-05-31T10:00:00+08:00")),
            ("orders", order("O3", at="2024-06-03T10:00:00+08:00")),
        )
    )
    assert got == {"O2": "block", "O3": "allow"}


def test_r1_held_events_with_a_version_below_the_issue_are_dropped() -> None:
    engine = new_engine()
    feed(
        engine,
        ("bans", ban(version=1, action="revoke", effective_on="2024-05-14")),
        ("bans", ban(version=2)),
        ("accounts", link()),
    )
    assert verdicts(feed(engine, ("orders", order("O1", at="2024-06-03T10:00:00+08:00")))) == {
        "O1": "block"
    }


def test_r1_an_invalid_amend_leaves_the_decision_as_it_was() -> None:
    engine = new_engine()
    feed(engine, ("bans", ban()), ("accounts", link()))
    out = feed(
        engine, ("bans", ban(version=2, action="amend", measures=[{"kind": "trading", "years": 7}]))
    )
    assert "Art. 7" in rejections(out)[0]
    assert verdicts(feed(engine, ("orders", order("O1", at="2028-05-12T10:00:00+08:00")))) == {
        "O1": "block"
    }


def test_r1_amend_replaces_served_on() -> None:
    engine = new_engine()
    feed(engine, ("bans", ban(measures=[{"kind": "trading", "months": 1}])), ("accounts", link()))
    feed(engine, ("bans", ban(version=2, action="amend", measures=[], served_on="2024-06-28")))
    got = verdicts(
        feed(
            engine,
            ("orders", order("O1", at="2024-05-20T10:00:00+08:00")),
            ("orders", order("O2", at="2024-07-01T10:00:00+08:00")),
        )
    )
    assert got == {"O1": "allow", "O2": "block"}


def test_r2_revocation_before_the_start_removes_the_window() -> None:
    engine = new_engine()
    feed(
        engine,
        ("bans", ban()),
        ("bans", ban(version=2, action="revoke", effective_on="2024-05-13")),
    )
    assert engine.state.persons.get("P1").windows["D1"] == []


def test_r2_business_measure_starts_on_the_make_up_saturday() -> None:
    engine = new_engine()
    feed(
        engine,
        (
            "bans",
            ban(
                measures=[{"kind": "business", "years": 3}, {"kind": "trading", "years": 1}],
                served_on="2024-10-11",
            ),
        ),
    )
    windows = {w.kind: w for w in engine.state.persons.get("P1").windows["D1"]}
    assert windows["business"].start == date(2024, 10, 12)
    assert windows["business"].end == date(2027, 10, 12)
    assert windows["trading"].start == date(2024, 10, 14)
    assert windows["trading"].end == date(2025, 10, 14)
    assert not windows["trading"].estimated


def test_r2_lifetime_never_ends_and_estimated_starts_are_marked() -> None:
    engine = new_engine()
    feed(
        engine,
        (
            "bans",
            ban(
                measures=[{"kind": "business", "lifetime": True, "lifetime_ground": 3}],
                served_on="2026-12-31",
            ),
        ),
    )
    (window,) = engine.state.persons.get("P1").windows["D1"]
    assert window.end is None
    assert window.estimated
    assert "calendar estimated" in window.describe()


def _windows(did: str, version: int, person: str | None, start: date):
    window = Window(
        decision_id=did,
        kind="trading",
        start=start,
        end=None,
        estimated=False,
        measure="trading ban",
    )
    return BanWindows(decision_id=did, version=version, person_id=person, windows=[window])


def test_ban_view_ignores_a_record_older_than_the_one_applied() -> None:
    view = BanView()
    view.apply(_windows("D1", 2, "P1", date(2024, 6, 1)))
    view.apply(_windows("D1", 1, "P1", date(2024, 1, 1)))  # late replay of an older record
    assert view.get("P1").windows["D1"][0].start == date(2024, 6, 1)
    view.apply(_windows("D1", 2, "P1", date(2024, 6, 1)))  # a repeat is harmless
    assert len(view.get("P1").windows) == 1


def test_ban_view_moves_a_decision_when_its_person_changes() -> None:
    view = BanView()
    view.apply(_windows("D1", 1, "P1", date(2024, 6, 1)))
    view.apply(_windows("D1", 2, "P2", date(2024, 6, 1)))
    assert view.get("P1").windows == {}
    assert list(view.get("P2").windows) == ["D1"]
