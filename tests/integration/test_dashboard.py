"""The analysts' dashboard in a real browser: headless Debian Chromium driven by Playwright.

The worker requires the token for reads too (MARKETBAN_API_READ_TOKEN_REQUIRED), so the page must
ask for it before it shows anything; the API tests cover the open-reads setting. The test saves
the screenshot the README shows (docs/dashboard.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.integration.api import eventually, http
from tests.integration.stream import cli, start_worker, worker_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
SCENARIO = ROOT / "tests" / "scenarios" / "rules.jsonl"
SCREENSHOT = ROOT / "docs" / "dashboard.png"
TOKEN = "dashboard-test-token"  # noqa: S105 - a test credential
#: Flags for a sandboxed machine with no network beyond loopback (docs: the machine's notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = os.environ.get("MARKETBAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {path}: `make test` installs Debian's chromium package")
    return path


def blocked_orders(path: Path, first: int, count: int) -> Path:
    """Orders of the banned account A1 (trading ban from 2024-05-13): each one is blocked."""
    with path.open("w") as out:
        for n in range(first, first + count):
            order = {
                "order_id": f"O-LIVE-{n}", "account_id": "A1", "exchange": "XSHG",
                "security": "600000", "side": "buy", "quantity": 100, "price": "10.50",
                "entered_at": "2024-05-14T10:00:00+08:00", "broker": "B042",
            }  # fmt: skip
            out.write(json.dumps({"topic": "orders", "key": "A1", "value": order}) + "\n")
    return path


def proxy_orders(path: Path, *, then: bool = False) -> Path:
    """P1's own order and an unlinked account's order from one device; or that account's next."""

    def line(oid: str, account: str, minute: int) -> str:
        order = {
            "order_id": oid, "account_id": account, "exchange": "XSHG", "security": "600000",
            "side": "buy", "quantity": 100, "price": "10.50",
            "entered_at": f"2024-05-14T10:{minute:02d}:00+08:00", "broker": "B042",
            "terminal": {"ip": "10.9.9.9", "mac": "00:1B:44:AA:BB:01"},
        }  # fmt: skip
        return json.dumps({"topic": "orders", "key": account, "value": order}) + "\n"

    orders = (
        [("O-LIVE-N2", "NLIVE", 30)]
        if then
        else [("O-LIVE-P1", "A1", 10), ("O-LIVE-N1", "NLIVE", 20)]
    )
    path.write_text("".join(line(*o) for o in orders))
    return path


def test_dashboard_shows_live_violations_acknowledges_and_confirms_a_suspicion(
    kafka_env: dict[str, str], tmp_path: Path
) -> None:
    env = worker_env(kafka_env, tmp_path / "data")
    env.update(MARKETBAN_API_TOKEN=TOKEN, MARKETBAN_API_READ_TOKEN_REQUIRED="true")  # noqa: S106
    port = int(env["MARKETBAN_WEB_PORT"])
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        cli(env, "feed", str(SCENARIO))
        assert http(port, "/api/violations")[0] == 401  # reads need the token
        assert http(port, "/api/violations", token=TOKEN)[0] == 200
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/")
                drive(page, env, tmp_path)
            finally:
                browser.close()
    finally:
        worker.stop()


def drive(page: Page, env: dict[str, str], tmp_path: Path) -> None:
    port = int(env["MARKETBAN_WEB_PORT"])
    # Without the token the page says what it needs and shows no data.
    expect(page.locator("#message")).to_contain_text("set the API token", timeout=30_000)
    expect(page.locator("#violations tbody tr")).to_have_count(0)
    page.click("#token-button")
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    expect(page.locator("#violations tbody tr").first).to_be_visible(timeout=60_000)
    expect(page.locator("#stream-state")).to_have_text("live", timeout=30_000)

    # New violations appear while they are produced, without a reload.
    page.evaluate("window.__loaded_once = true")
    feeder = threading.Thread(
        target=cli, args=(env, "feed", str(blocked_orders(tmp_path / "live.jsonl", 1, 5)))
    )
    feeder.start()
    for n in range(1, 6):
        row = page.locator(f'#violations tr[data-id="blocked_attempt:O-LIVE-{n}"]')
        expect(row).to_be_visible(timeout=60_000)
    feeder.join(timeout=120)
    assert page.evaluate("window.__loaded_once") is True  # the same page: nothing reloaded
    expect(page.locator('[data-count="kind:blocked_attempt"] .n')).not_to_have_text("0")

    # Acknowledge one: the disposition travels through Kafka back to the page.
    target = page.locator('#violations tr[data-id="blocked_attempt:O-LIVE-3"]')
    target.locator(".ack-button").click()
    page.fill("#ack-note", "called broker B042")
    page.click("#ack-confirm")
    # Recorded as the analyst of the token (the one-person token's), not a name typed in.
    expect(target.locator(".ack")).to_have_text("acknowledged by operator", timeout=60_000)

    # R8: a nominee's account trades from the banned person's device; the suspicion appears live.
    cli(env, "feed", str(proxy_orders(tmp_path / "proxy.jsonl")))
    vid = "suspected_proxy_trading:NLIVE:P1:2024-05-14"
    suspicion = page.locator(f'#violations tr[data-id="{vid}"]')
    expect(suspicion).to_be_visible(timeout=60_000)
    expect(suspicion).to_contain_text("00:1b:44:aa:bb:01")  # the terminal
    expect(suspicion).to_contain_text("O-LIVE-P1")  # the banned person's order that used it
    expect(suspicion).to_contain_text("A1")  # the banned person's account
    page.screenshot(path=str(SCREENSHOT))
    # The analyst confirms control: the accounts record goes through Kafka to the account's task.
    suspicion.locator('[data-action="confirm"]').click()
    page.fill("#ack-note", "same device as P1, same hours")
    page.click("#ack-confirm")
    expect(suspicion.locator(".ack")).to_have_text("confirmed by operator", timeout=60_000)
    eventually(
        lambda: http(port, "/api/accounts/NLIVE", token=TOKEN)[1].get("controllers") or None,
        what="the controlled link applied by the account's task",
    )
    # The next order of that account is blocked, and the reason names the controlled link.
    cli(env, "feed", str(proxy_orders(tmp_path / "next.jsonl", then=True)))
    blocked = page.locator('#violations tr[data-id="blocked_attempt:O-LIVE-N2"]')
    expect(blocked).to_be_visible(timeout=60_000)
    expect(blocked.locator("td").nth(1)).to_have_attribute("title", re.compile("controlled by P1"))
    # The account page shows the controller; revoking it is one more analyst action.
    page.goto(page.url.split("#")[0] + "#/accounts/NLIVE")
    row = page.locator('#controllers tr[data-person="P1"]')
    expect(row).to_contain_text(vid, timeout=30_000)
    row.locator(".revoke-button").click()
    page.click("#ack-confirm")
    expect(page.locator("#controllers")).to_contain_text("nobody", timeout=60_000)

    # Search by account: the account page, its measures and its violations.
    page.fill("#search-text", "A1")
    page.click("#search button")
    expect(page.locator("#page-account h2").first).to_contain_text("Account A1", timeout=30_000)
    expect(page.locator("#page-account")).to_contain_text("CSRC-1")
    expect(page.locator("#page-account")).to_contain_text("O-LIVE-3")
    # Search by a name: the register, filtered.
    page.fill("#search-text", "测试")
    page.click("#search button")
    expect(page.locator("#bans tbody tr").first).to_contain_text("测试", timeout=30_000)
    page.locator("#bans tbody tr a").first.click()
    expect(page.locator("#page-ban")).to_contain_text("Versions")
