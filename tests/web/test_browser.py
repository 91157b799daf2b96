"""End to end in real headless Chromium (Debian's package, driven by Playwright) against a real dashboard
on 127.0.0.1, with the data written by other real processes through the library.

Screenshots of every page land in ``test-artifacts/`` (git-ignored). The delay from a database write to
the DOM is measured in the browser and printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from bounceback.stores import SqliteSettings
from bounceback.stores.journal._journal import Journal
from bounceback.web import DashboardServer
from tests.web.conftest import ROOT, Scenario, run_scenario

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Records every browser notification the page raises (Chromium headless shows none on screen).
RECORD_NOTIFICATIONS = """
window.__notifications = [];
if (window.Notification) {
  const Real = window.Notification;
  window.Notification = class extends Real {
    constructor(title, options) { window.__notifications.push(title); super(title, options); }
  };
}
"""
# Logs (time, state text) of one breaker's badge each time the overview region changes.
LOG_BREAKER = """name => {
  window.__bbLog = [];
  const region = document.getElementById("overview-breakers");
  new MutationObserver(() => {
    const badge = document.querySelector(`[data-breaker="${name}"] .status`);
    if (badge) window.__bbLog.push([Date.now(), badge.textContent]);
  }).observe(region, {childList: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Session:
    """A signed-in browser tab on one dashboard, failing the test on script dialogs or page errors."""

    def __init__(self, context: BrowserContext, server: DashboardServer) -> None:
        self.server = server
        self.page: Page = context.new_page()
        self.page.set_default_timeout(5000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self._console)
        reply = self.page.goto(server.url)  # the token URL printed at start-up
        assert reply is not None and reply.ok

    def _console(self, message: Any) -> None:
        # A refused form answers 422 on purpose; the browser logs that as a failed resource.
        if message.type == "error" and "status of 422" not in message.text:
            self.errors.append(message.text)

    def open(self, path: str) -> Page:
        reply = self.page.goto(self.server.base_url + path)
        assert reply is not None and reply.ok, (path, reply and reply.status)
        self.page.wait_for_selector('#live-status[data-state="live"]')
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def session(browser: Browser, database: Path) -> Iterator[Session]:
    with DashboardServer(database, hooks=False) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["notifications"])
        context.add_init_script(RECORD_NOTIFICATIONS)
        try:
            tab = Session(context, server)
            yield tab
            assert tab.dialogs == [], f"a script ran in the page: {tab.dialogs}"
            assert tab.errors == []
        finally:
            context.close()


def _seconds_in(text: str) -> float:
    number = text.split()[-2]
    return float(number)


def test_a_breaker_opened_by_another_process_appears_live_with_its_countdown(
    session: Session, database: Path
) -> None:
    page = session.open("/")
    assert "No breaker has stored its state" in page.inner_text("#overview-breakers")
    (line,) = run_scenario("open-breaker", str(database), "payments-db", "30")
    row = page.wait_for_selector('[data-breaker="payments-db"]')
    assert row is not None
    applied = float(page.get_attribute("#overview-breakers", "data-applied-at") or 0) / 1000
    first_delay = applied - line["written"]
    assert "open" in row.inner_text()
    countdown = page.locator('[data-breaker="payments-db"] .countdown')
    until = float(countdown.get_attribute("data-until") or 0)
    assert abs(until - (line["written"] + 30)) < 1.0
    before = _seconds_in(countdown.inner_text())
    assert 25 < before <= 30
    page.wait_for_function(
        "s => parseFloat(document.querySelector('[data-breaker=\"payments-db\"] .countdown')"
        ".textContent.split(' ').slice(-2)[0]) <= s - 0.5",
        arg=before,
    )
    # the on-page notice and the browser notification
    notice = page.wait_for_selector("#notices .notice-breaker-opened")
    assert notice is not None and "Breaker payments-db opened" in notice.inner_text()
    assert "Breaker payments-db opened" in page.evaluate("window.__notifications")
    session.shot("overview")

    # More samples of write -> DOM: another process forces the breaker open and closed in turn.
    page.evaluate(LOG_BREAKER, "payments-db")
    toggler = Scenario("toggle", str(database), "payments-db", "6", "0.3")
    try:
        writes = [toggler.next() for _ in range(6)]
    finally:
        toggler.stop()
    page.wait_for_function("n => window.__bbLog.length > 0 && "
                           "window.__bbLog[window.__bbLog.length - 1][1].includes('closed')", arg=None)  # fmt: skip
    log: list[list[Any]] = page.evaluate("window.__bbLog")
    delays = [first_delay]
    for write in writes:
        label = "forced open" if write["state"] == "forced_open" else "closed"
        seen = next(t / 1000 for t, text in log if text == label and t / 1000 >= write["written"] - 0.005)
        delays.append(seen - write["written"])
    print(
        f"\nwrite -> DOM delay over {len(delays)} writes: median {statistics.median(delays) * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms ({', '.join(f'{d * 1000:.0f}' for d in delays)} ms)"
    )
    assert max(delays) < 0.5
    assert statistics.median(delays) < 0.15


def test_a_running_recovery_shows_progress_and_is_cancelled_from_the_button(
    session: Session, database: Path
) -> None:
    runner = Scenario("running", str(database), "sync-orders", "20")
    try:
        runner.next()
        page = session.open("/recoveries")
        row = page.wait_for_selector("#recoveries-active tr[data-run]")
        assert row is not None
        text = row.inner_text()
        assert "sync-orders" in text and "attempt 1 of 8" in text
        assert "ConnectionResetError" in text and "orders.example:443" in text
        wait = _seconds_in(page.inner_text("#recoveries-active .next .countdown"))
        assert 15 < wait <= 20
        assert page.locator("#recoveries-active progress.deadline").count() == 1
        session.shot("recoveries")
        page.click('#recoveries-active button:has-text("Cancel")')
        clicked = time.time()
        outcome = runner.next(timeout=5)
        assert outcome["outcome"] == "cancelled"
        assert outcome["at"] - clicked < 1.0  # the automatic attempts stopped within a second
        page.wait_for_selector("text=Cancel requested")
        page.wait_for_selector("#recoveries-recent tr[data-run] >> text=gave-up")
        assert "No recovery is running" in page.inner_text("#recoveries-active")
    finally:
        runner.stop()
    with Journal(database) as journal:
        (run,) = journal.runs()
        assert (run.status, run.reason, run.attempts) == ("gave-up", "cancelled", 1)


def test_the_settings_form_refuses_a_bad_value_inline_and_saves_a_good_one_live(
    session: Session, database: Path
) -> None:
    follower = Scenario("follow", str(database), "retry.max_attempts")
    try:
        assert follower.next() == {"value": 5}
        page = session.open("/settings")
        field = page.locator('[name="v:retry.max_attempts"]')
        field.fill("0")
        page.click("text=Save changes")
        error = page.wait_for_selector('tr[data-key="retry.max_attempts"] .field-error:not(:empty)')
        assert error is not None and "expected a whole number from 1" in error.inner_text()
        assert page.get_attribute('[name="v:retry.max_attempts"]', "aria-invalid") == "true"
        assert page.input_value('[name="v:retry.max_attempts"]') == "0"  # what was typed stays to be fixed
        assert "nothing was saved" in page.inner_text(".form-error")
        session.shot("settings-refused")
        with SqliteSettings(database) as settings:
            assert settings.history() == []
            assert settings.resolve()["retry.max_attempts"].source == "default"

        # the plot previews what is being typed, before anything is saved
        page.locator('[name="v:retry.max_attempts"]').fill("3")
        page.wait_for_function("() => document.querySelectorAll('#settings-plot rect.band').length === 2")
        page.locator('[name="v:retry.max_attempts"]').fill("7")
        page.wait_for_function("() => document.querySelectorAll('#settings-plot rect.band').length === 6")
        with SqliteSettings(database) as settings:
            assert settings.history() == []
        page.click("text=Save changes")
        page.wait_for_selector("text=Settings saved")
        saved = time.time()
        seen = follower.next(timeout=5)
        assert seen["value"] == 7 and seen["at"] - saved < 2.0  # picked up by a running program
        assert page.input_value('[name="v:retry.max_attempts"]') == "7"
        bands = page.locator("#settings-plot rect.band").count()
        assert bands == 6  # the plot follows the saved value: 7 attempts, 6 waits
        session.shot("settings")

        page.click('#settings-history tr[data-change] button:has-text("Undo")')
        page.wait_for_selector("text=Change undone")
        assert follower.next(timeout=5)["value"] == 5
    finally:
        follower.stop()


def test_a_parked_ticket_is_resolved_and_its_script_shown_as_text(session: Session, database: Path) -> None:
    program = Scenario("park", str(database), "read-meter", "30")
    try:
        program.next()
        page = session.open("/tickets")
        card = page.wait_for_selector("article.ticket")
        assert card is not None
        shown = page.inner_text("article.ticket .error-text")
        assert "<script>alert('pwned')</script> upstream said <b>no</b>" in shown
        assert page.evaluate("document.scripts.length") == 1  # only app.js
        assert page.locator("article.ticket b").count() == 0
        assert "meter.local:502" in page.inner_text("ol.guidance")
        assert page.inner_text("#nav-tickets") == "1"
        session.shot("tickets")
        page.click('li[data-choice="retry"] button')
        page.wait_for_selector("text=Ticket resolved")
        result = program.next(timeout=5)
        assert result == {"value": "42 kWh", "tries": 3}
        page.wait_for_selector("#tickets-resolved tr[data-ticket] >> text=retry")
        assert "No ticket is waiting" in page.inner_text("#tickets-open")
    finally:
        program.stop()


def test_timeline_page_draws_runs_from_other_processes(session: Session, database: Path) -> None:
    run_scenario("seed", str(database))
    page = session.open("/timeline")
    assert page.locator("svg.timeline.wide g.run").count() == 5  # the desk drawing (the phone one is hidden)
    assert page.locator("svg.timeline.wide circle.attempt.failed").count() > 5
    page.select_option("#timeline-filter select", "payments-db")
    page.wait_for_url("**/timeline?op=payments-db")
    assert page.locator("svg.timeline.wide g.run").count() == 1
    session.shot("timeline")


def test_a_request_without_the_token_is_refused(browser: Browser, database: Path) -> None:
    with DashboardServer(database, hooks=False) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            reply = page.goto(server.base_url + "/")
            assert reply is not None and reply.status == 401
            assert "access token is needed" in page.inner_text("body")
            api = page.evaluate("fetch('/api/snapshot').then(r => r.status)")
            assert api == 401
            wrong = page.goto(server.base_url + "/?token=guess")
            assert wrong is not None and wrong.status == 403
        finally:
            context.close()


def test_a_page_of_a_restarted_dashboard_says_it_is_signed_out(browser: Browser, database: Path) -> None:
    first = DashboardServer(database, hooks=False).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(first.url)
        page.wait_for_selector('#live-status[data-state="live"]')
        port = first.port
        first.stop()
        with DashboardServer(database, port=port, hooks=False):  # same address, new token
            page.wait_for_function(
                "() => document.getElementById('live-status').textContent.startsWith('signed out')",
                timeout=8000,
            )
    finally:
        context.close()
