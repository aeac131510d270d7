"""End-to-end: `marketban replay` on scenario files gives what the spec implies (R1-R7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def run_replay(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "marketban.cli", "replay", str(path)],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", "replay reports nothing but its output"
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def rules_output() -> list[dict[str, Any]]:
    return run_replay(SCENARIOS / "rules.jsonl")


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return json.loads((SCENARIOS / "rules.expected.json").read_text())


def test_every_order_gets_exactly_one_decision(rules_output, expected) -> None:
    ids = [o["value"]["order_id"] for o in rules_output if o["topic"] == "decisions"]
    assert sorted(ids) == sorted(expected["decisions"])


def test_verdict_clause_and_session_are_what_the_spec_implies(rules_output, expected) -> None:
    got = {
        o["value"]["order_id"]: [o["value"]["verdict"], o["value"]["clause"], o["value"]["session"]]
        for o in rules_output
        if o["topic"] == "decisions"
    }
    wrong = {
        oid: (got.get(oid), want)
        for oid, want in expected["decisions"].items()
        if got.get(oid) != want
    }
    assert not wrong, f"order: (got, expected): {wrong}"


def test_violations_are_exactly_the_expected_ones_each_once(rules_output, expected) -> None:
    got = [o["value"]["violation_id"] for o in rules_output if o["topic"] == "violations"]
    assert sorted(got) == expected["violations"]


def test_rejections_name_the_lines_that_earned_them(rules_output, expected) -> None:
    lines = sorted(o["value"]["line"] for o in rules_output if o["topic"] == "rejected")
    assert lines == expected["rejected_lines"]


def test_invalid_orders_are_blocked_with_an_invalid_order_reason(rules_output) -> None:
    invalid = [
        o["value"]
        for o in rules_output
        if o["topic"] == "decisions" and o["value"]["session"] is None
    ]
    assert invalid
    assert all(
        d["verdict"] == "block" and d["reason"].startswith("invalid order:") for d in invalid
    )


def test_r1_rejections_name_the_article(rules_output) -> None:
    reasons = [
        o["value"]["error"]
        for o in rules_output
        if o["topic"] == "rejected" and o["value"]["source_topic"] == "bans"
    ]
    assert len(reasons) == 10
    assert all("Art. " in r for r in reasons), reasons


def test_replay_is_deterministic(rules_output) -> None:
    assert run_replay(SCENARIOS / "rules.jsonl") == rules_output


def test_the_synthetic_market_replays_with_one_decision_per_order(tmp_path: Path) -> None:
    market = tmp_path / "market.jsonl"
    with market.open("wb") as f:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "marketban.cli",
                "synth",
                "--orders",
                "3000",
                "--banned-persons",
                "20",
            ],
            stdout=f,
            check=True,
        )
    out = run_replay(market)
    decided = [o["value"]["order_id"] for o in out if o["topic"] == "decisions"]
    assert len(decided) == len(set(decided)) == 3000
    verdicts = {o["value"]["verdict"] for o in out if o["topic"] == "decisions"}
    assert verdicts == {"allow", "block", "allow_exempt"}
