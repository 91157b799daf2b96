"""What an operator reads and does on the dashboard, at a desk (1366x900) and on a phone (390x844).

Real headless Chromium (Debian's, through Playwright, started as in ``test_browser.py``) against a real
dashboard on 127.0.0.1; the data is written by other processes through the library. Every page must fit
the screen (``scrollWidth`` <= the viewport), read right (states first, full names, plurals), and the
settings form must keep what a person typed. The screenshots land in ``test-artifacts/``; the ones in
``docs/img`` are copies of them.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from bounceback.stores import SqliteSettings
from bounceback.stores.journal._journal import Journal
from bounceback.web import DashboardServer
from tests.cli.run_helpers import bb_start
from tests.cli.test_run_watched import GATE
from tests.web.conftest import Scenario, run_scenario
from tests.web.test_browser import ARTIFACTS, RECORD_NOTIFICATIONS, Session, browser  # noqa: F401  (fixture)

VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
PAGES = {"overview": "/", "recoveries": "/recoveries", "timeline": "/timeline", "settings": "/settings",
         "tickets": "/tickets"}  # fmt: skip
LONG_NAME = "nightly-export-of-the-plant-historian-to-the-warehouse"
WRONG_PLURAL = re.compile(r"\b1 (attempts|calls|probes|runs|failures|tickets|recoveries)\b")


@pytest.fixture(params=list(VIEWPORTS))
def tab(request: pytest.FixtureRequest, browser: Browser, database: Path) -> Iterator[Session]:  # noqa: F811
    with DashboardServer(database, hooks=False) as server:
        context = browser.new_context(viewport=VIEWPORTS[request.param], permissions=["notifications"])
        context.add_init_script(RECORD_NOTIFICATIONS)
        try:
            session = Session(context, server)
            session.viewport = request.param  # type: ignore[attr-defined]
            yield session
            assert session.errors == []
        finally:
            context.close()


WIDER = """() => [...document.querySelectorAll("body *")]
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 12).map(el => el.tagName + "." + el.className + "[" + (el.name || "") + "] " + Math.round(el.getBoundingClientRect().width) + " " + (el.textContent || "").slice(0, 30))"""


GEOMETRY = """([svg, name]) => {
  const box = el => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right}; };
  const chart = document.querySelector(svg);
  const lane = [...chart.querySelectorAll("g.run")].find(g => g.querySelector("text.lane-label").textContent.includes(name));
  if (!lane) return null;
  return {chart: box(chart), label: box(lane.querySelector("text.lane-label")), bar: box(lane.querySelector("rect.bar")),
          waits: [...lane.querySelectorAll("line.wait")].map(box),
          tick: chart.querySelector("text.tick").getBoundingClientRect().height};
}"""


def _fits(page: Page) -> tuple[int, int]:
    page.wait_for_load_state("load")  # measured with the stylesheet applied, not a half-loaded page
    scroll, width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= width, f"{page.url} is {scroll} px wide on a {width} px screen: {page.evaluate(WIDER)}"
    return scroll, width


def _shot(tab: Session, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(ARTIFACTS / f"{name}-{tab.viewport}.png"), full_page=True)  # type: ignore[attr-defined]


def _seed(database: Path) -> Scenario:
    run_scenario("seed", str(database))
    run_scenario("open-breaker", str(database), "payments-db", "300")
    run_scenario("force-open", str(database), "conveyor-plc")
    run_scenario("closed-with-failures", str(database), "historian-api", "4")
    run_scenario("closed-with-failures", str(database), "fetch-user", "0")
    run_scenario("cancelled-wait", str(database), LONG_NAME)
    ticket = Scenario("park", str(database), "read-meter", "30")
    ticket.next()
    return ticket


def test_every_page_fits_the_screen_and_reads_right(tab: Session, database: Path) -> None:
    ticket = _seed(database)
    try:
        page = tab.open("/")
        for name, path in PAGES.items():
            if path != "/":
                tab.open(path)
            _fits(page)
            text = page.inner_text("body")
            assert not WRONG_PLURAL.search(text), (name, WRONG_PLURAL.search(text))
            assert "more characters" not in text
            _shot(tab, name)

        # Overview: what refuses or probes calls first, counted in a link; why a closed one stays closed.
        tab.open("/")
        order = page.eval_on_selector_all(
            "#overview-breakers tr[data-breaker]", "rs => rs.map(r => r.dataset.breaker)"
        )
        assert order[:2] == ["conveyor-plc", "payments-db"], order
        card = page.inner_text("#card-breakers")
        assert card.startswith("2") and "breakers not closed" in card and "1 forced open, 1 open" in card
        page.click("#card-breakers a")
        assert page.url.endswith("#breakers")
        row = page.inner_text('[data-breaker="historian-api"]')
        assert "100%" in row and "stays closed: 4 of the 10 calls needed" in row
        forced = page.inner_text('[data-breaker="conveyor-plc"]')
        assert forced.count("forced open") == 1

        # Timeline: the full name, inside the chart; a cancelled run draws no wait past its end.
        tab.open("/timeline")
        svg = "svg.timeline.narrow" if tab.viewport == "phone" else "svg.timeline.wide"  # type: ignore[attr-defined]
        assert page.locator(svg).is_visible()
        # Measured in one step in the page: a live re-render between two reads cannot split the picture.
        geometry = page.evaluate(GEOMETRY, [svg, LONG_NAME])
        assert geometry is not None, "the lane of the long name is not drawn"
        chart, label, bar, waits = geometry["chart"], geometry["label"], geometry["bar"], geometry["waits"]
        assert label["left"] >= chart["left"] and label["right"] <= chart["right"] + 1
        assert all(w["right"] <= bar["right"] + 1 for w in waits)
        assert geometry["tick"] >= 10, geometry["tick"]  # axis text a person can read
    finally:
        ticket.stop()


def test_the_settings_form_keeps_typed_values_and_its_error_and_enter_saves(
    tab: Session, database: Path
) -> None:
    with SqliteSettings(database) as settings:
        settings.set("retry.max_attempts", 7)  # a stored value: its reset button is the form's first button
    page = tab.open("/settings")
    # A refused save: the error and both typed values stay through live re-renders.
    page.fill('[name="v:retry.initial_delay"]', "2s")
    page.fill('[name="v:retry.max_delay"]', "1s")  # below the initial delay: refused
    page.click("text=Save changes")
    page.wait_for_selector('tr[data-key="retry.max_delay"] .field-error:not(:empty)')
    version = int(page.evaluate("document.body.dataset.version"))
    with SqliteSettings(database) as settings:
        settings.set("breaker.open_seconds", 45)  # another process writes: the page gets a new snapshot
    page.wait_for_function("v => parseInt(document.body.dataset.version) > v", arg=version)
    time.sleep(0.3)  # any re-render of the form would have happened by now
    assert "retry.initial_delay" in page.inner_text('tr[data-key="retry.max_delay"] .field-error')
    assert page.input_value('[name="v:retry.initial_delay"]') == "2s"
    assert page.input_value('[name="v:retry.max_delay"]') == "1s"
    assert "nothing was saved" in page.inner_text(".form-error")
    _shot(tab, "settings-refused")

    # Enter in a field saves the form; it never presses the reset of retry.max_attempts.
    tab.open("/settings")
    page.fill('[name="v:retry.initial_delay"]', "750ms")
    page.press('[name="v:retry.initial_delay"]', "Enter")
    page.wait_for_selector("text=Settings saved")
    with SqliteSettings(database) as settings:
        values = settings.effective(None)
        assert values["retry.initial_delay"] == 0.75 and values["retry.max_attempts"] == 7

    # Reset names the setting it reset.
    page.click('button[aria-label="Reset retry.max_attempts to the default"]')
    page.wait_for_selector("text=retry.max_attempts reset: the default applies again.")
    with SqliteSettings(database) as settings:
        assert settings.resolve()["retry.max_attempts"].source == "default"
    _fits(page)


def test_breaker_state_is_read_live_and_the_running_attempt_is_numbered(tab: Session, database: Path) -> None:
    run_scenario("open-breaker", str(database), "payments-db", "1.5")
    page = tab.open("/")
    badge = '[data-breaker="payments-db"] .status'
    # The open time ends 1.5 s after the write: the page says half-open (as `bounceback status` does),
    # within the refresh of its snapshot, never "probe due".
    page.wait_for_function(
        f"() => document.querySelector('{badge}').textContent === 'half-open'", timeout=8000
    )
    assert "probe due" not in page.inner_text("#overview-breakers")

    runner = Scenario("second-attempt", str(database), "sync-orders")
    try:
        assert runner.next()["attempt"] == 2
        tab.open("/recoveries")
        row = page.wait_for_selector("#recoveries-active tr[data-run]")
        assert row is not None
        text = " ".join(row.inner_text().split())
        assert "attempt 2 of 5 running" in text, text
        _shot(tab, "recoveries-running")
    finally:
        runner.stop()


def test_a_command_is_shown_from_its_first_attempt_and_cancel_stops_it(
    tab: Session, database: Path, tmp_path: Path
) -> None:
    """`bounceback run` appears at once as "attempt 1 of 5 running" (nothing failed yet), and its Cancel
    stops the command's process group: the run ends as cancelled (exit 3) after that one attempt."""
    with SqliteSettings(database) as settings:
        settings.set("manual.mode", "raise")  # no ticket parked: the run's own exit code is read
    gate, pids = tmp_path / "gate", tmp_path / "pids"
    os.mkfifo(gate)
    argv = [sys.executable, GATE, str(gate), "--pid", str(pids)]
    proc = bb_start("run", "--op", LONG_NAME, "--attempts", "5", "--", *argv)
    try:
        page = tab.open("/recoveries")
        row = page.wait_for_selector("#recoveries-active tr[data-run]", timeout=15000)
        assert row is not None
        text = " ".join(row.inner_text().split())
        assert "attempt 1 of 5 running" in text and LONG_NAME in text, text
        assert "Cancel" in text
        _fits(page)
        _shot(tab, "recoveries-first-attempt")
        page.click('#recoveries-active button:has-text("Cancel")')
        page.wait_for_selector("text=Cancel requested")
        _out, err = proc.communicate(timeout=30)
        page.wait_for_selector("#recoveries-active tr[data-run]", state="detached", timeout=10000)
        assert "No recovery is running" in page.inner_text("#recoveries-active")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert proc.returncode == 3 and "cancelled from the dashboard" in err, err
    [command] = [int(line) for line in pids.read_text().split()]  # one attempt, not retried
    assert not Path(f"/proc/{command}").exists() or _zombie(command)
    [run] = Journal(database).runs()
    assert (run.status, run.reason, run.attempts) == ("gave-up", "cancelled", 1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
