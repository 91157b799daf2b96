"""The settings page's outage simulation follows the settings it is given."""

from __future__ import annotations

import re

from bounceback.core.settings._source import defaults
from bounceback.web.views._simplot import outage_plot


def _calls_per_request(svg: str) -> float:
    match = re.search(r"([0-9.]+) calls per request", svg)
    assert match is not None, svg
    return float(match.group(1))


def test_a_retry_budget_shows_less_load_than_plain_retries() -> None:
    plain = {**defaults(), "breaker.enabled": False, "budget.enabled": False, "retry.max_attempts": 8}
    budgeted = {**plain, "budget.enabled": True, "budget.ratio": 0.1, "budget.min_per_second": 0.0}
    assert _calls_per_request(outage_plot(budgeted)) < _calls_per_request(outage_plot(plain))
    assert _calls_per_request(outage_plot(plain)) > 3  # eight attempts against a dead service


def test_values_that_cannot_run_say_so_as_text() -> None:
    broken = {**defaults(), "retry.initial_delay": 10.0, "retry.max_delay": 1.0}
    html = outage_plot(broken)
    assert html.startswith('<p class="field-error">')
    assert "<svg" not in html
