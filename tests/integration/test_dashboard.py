"""The analysts' dashboard in a real browser: headless Debian Chromium driven by Playwright.

The worker requires the token for reads too (MARKETBAN_API_READ_TOKEN_REQUIRED), so the page must
ask for it before it shows anything; the API tests cover the open-reads setting. The test saves
the screenshot the README shows (docs/dashboard.png).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.integration.api import http
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


def test_dashboard_shows_live_violations_searches_and_acknowledges(
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
    page.fill("#ack-by", "analyst-9")
    page.click("#ack-confirm")
    expect(target.locator(".ack")).to_have_text("acknowledged by analyst-9", timeout=60_000)
    page.screenshot(path=str(SCREENSHOT))

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
