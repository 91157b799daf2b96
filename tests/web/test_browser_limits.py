"""The Limits table as a person reads it, for limits shared by a fleet: real headless Chromium (Debian's,
through Playwright) at a desk (1366x900) and on a phone (390x844), against a real dashboard on
127.0.0.1 over a home database that three real processes share their limits through.

The fleet (``tests.web.limit_fleet``): a concurrency limit of 4 and a rate limit of 10/s shared through
the store, plus a local limit of 5 per process. A person must read 4 and 10/s (the fleet's limits, once),
the store's 3 calls in flight (two processes hold one each, a holder without a journal one more) and
the fleet's 14 tokens left, each labelled shared; the local limit still adds up (15 calls). Screenshots
land in ``test-artifacts/limits-shared-<viewport>.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from bounceback.web import DashboardServer
from tests.web.limit_fleet import running_fleet
from tests.web.test_browser import RECORD_NOTIFICATIONS, Session, browser  # noqa: F401  (fixture)
from tests.web.test_browser_operator import VIEWPORTS, _fits, _shot


@pytest.fixture(params=list(VIEWPORTS))
def tab(request: pytest.FixtureRequest, browser: Browser, database: Path) -> Iterator[Session]:  # noqa: F811
    with DashboardServer(database, hooks=False) as server:
        context = browser.new_context(viewport=VIEWPORTS[request.param])
        context.add_init_script(RECORD_NOTIFICATIONS)
        try:
            session = Session(context, server)
            session.viewport = request.param  # type: ignore[attr-defined]
            yield session
            assert session.errors == []
        finally:
            context.close()


def _cells(tab: Session, limiter: str) -> dict[str, str]:
    """The cells of one limiter's row as the page shows them, by their column label."""
    row = tab.page.locator(f'#overview-operations tr[data-limit="{limiter}"]')
    row.wait_for()
    labels = row.locator("td").evaluate_all("tds => tds.map(td => [td.dataset.label, td.innerText.trim()])")
    return dict(labels)


def test_a_fleets_shared_limits_read_once_with_the_stores_counts(tab: Session, database: Path) -> None:
    with running_fleet(database):
        page = tab.open("/")
        # The live page swaps the overview in when the next readings arrive, so an element handle may be
        # detached mid-action: wait for the table, then scroll by id (looked up at the moment it runs).
        page.locator('#overview-operations tr[data-limit="payments-db"]').wait_for()
        page.evaluate("document.getElementById('limits').scrollIntoView({block: 'start'})")
        _fits(page)
        shared = _cells(tab, "payments-db")
        assert shared["in use"] == "3 (75%)", shared  # the store's leases, not the processes' 2
        assert shared["of"] == "4 calls", shared  # the fleet's limit, not 3 x 4
        assert shared["kind"].split() == ["concurrency", "shared", "by", "3", "processes"], shared
        assert shared["processes"] == "3"
        rate = _cells(tab, "quotes-api")
        assert rate["in use"] == "14 tokens left", (
            rate
        )  # the fleet's bucket: 20 - 3 x 2, not 3 x 18 local tokens
        assert rate["of"] == "10/s", rate  # the fleet's rate, not 30/s
        assert "shared by 3 processes" in rate["kind"]
        local = _cells(tab, "local-cache")
        assert local["in use"] == "2 (13%)" and local["of"] == "15 calls", local  # local limits add up
        assert "shared" not in local["kind"]
        # The store's name is there for whoever wants it, on hover.
        title = page.locator('tr[data-limit="payments-db"] .shared').get_attribute("title")
        assert title == f"sqlite:{database}"
        _shot(tab, "limits-shared")
