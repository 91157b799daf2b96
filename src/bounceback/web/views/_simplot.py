"""The settings page's simulation: what the stored settings do to a service through an outage.

A small run of the policy simulator (200 clients, a two-minute outage, virtual time) for the operation's
resolved settings beside the same clients with no retries, drawn as calls per second over time in inline
SVG (CSS classes only: the Content-Security-Policy allows no inline style). Runs are cached by the values
they depend on, so a live refresh of the page costs a dictionary look-up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from bounceback.errors import ConfigError
from bounceback.sim import Outage, PolicySpec, SimReport, compare
from bounceback.web.views._plot import nice_ceiling
from bounceback.web.views._text import esc, fmt_seconds

__all__ = ["SIM_MODEL", "outage_plot"]

SIM_MODEL = Outage(
    clients=200, rate_per_client=0.1, outage_start=20.0, outage_seconds=120.0, after_seconds=100.0
)
"""The scenario drawn: small enough to run in a fraction of a second."""

_KEYS = (
    "retry.max_attempts",
    "retry.initial_delay",
    "retry.max_delay",
    "retry.multiplier",
    "retry.backoff",
    "retry.jitter",
    "retry.deadline",
    "retry.attempt_timeout",
    "retry.max_retry_after",
    "breaker.enabled",
    "breaker.failure_rate",
    "breaker.slow_call_rate",
    "breaker.slow_call_duration",
    "breaker.window_type",
    "breaker.window",
    "breaker.min_calls",
    "breaker.consecutive_failures",
    "breaker.open_seconds",
    "breaker.open_seconds_max",
    "breaker.half_open_calls",
    "budget.enabled",
    "budget.ratio",
    "budget.min_per_second",
    "budget.window",
)
_W, _H = 620, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 14, 36


@functools.lru_cache(maxsize=32)
def _run(items: tuple[tuple[str, Any], ...]) -> SimReport:
    current = PolicySpec.from_settings(dict(items), label="these settings")
    plain = current.replace(label="no retries", attempts=1, breaker=None, budget=None)
    return compare(SIM_MODEL, [current, plain], seed=1)


def outage_plot(values: Mapping[str, Any]) -> str:
    """Calls per second through the outage for the resolved settings ``values``, beside no retries.

    >>> from bounceback.core.settings._source import defaults
    >>> svg = outage_plot(defaults())
    >>> svg.count("<polyline"), "<script" in svg
    (2, False)
    """
    try:
        report = _run(tuple((key, values.get(key)) for key in _KEYS))
    except ConfigError as exc:
        return f'<p class="field-error">These values cannot be simulated: {esc(exc)}</p>'
    ours, plain = report.results
    horizon = SIM_MODEL.outage_start + SIM_MODEL.outage_seconds + SIM_MODEL.after_seconds
    buckets = int(horizon / ours.bucket_seconds)
    series = [(ours.rates()[:buckets], "sim-ours"), (plain.rates()[:buckets], "sim-plain")]
    top = nice_ceiling(max(max(rates, default=0.0) for rates, _ in series))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(seconds: float) -> float:
        return _LEFT + plot_w * min(seconds, horizon) / horizon

    def y(rate: float) -> float:
        return _TOP + plot_h * (1 - min(rate, top) / top)

    parts = [
        f'<svg class="plot" viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="sim-title" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="sim-title">{esc(SIM_MODEL.describe())}: calls per second</title>',
        f'<rect class="sim-outage" x="{x(SIM_MODEL.outage_start):.1f}" y="{_TOP}" '
        f'width="{x(SIM_MODEL.outage_start + SIM_MODEL.outage_seconds) - x(SIM_MODEL.outage_start):.1f}" '
        f'height="{plot_h}"><title>the service is down</title></rect>',
    ]
    for i in range(5):
        rate = top * i / 4
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(rate):.1f}" y2="{y(rate):.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y(rate) + 4:.1f}" text-anchor="end">{rate:g}</text>'
        )
    for i in range(0, int(horizon) + 1, 60):
        parts.append(
            f'<text class="tick" x="{x(i):.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{i}s</text>'
        )
    for rates, css in series:
        points = " ".join(f"{x((n + 0.5) * ours.bucket_seconds):.1f},{y(r):.1f}" for n, r in enumerate(rates))
        parts.append(f'<polyline class="{css}" points="{points}"/>')
    parts.append(
        f'<text class="axis" x="{_LEFT + plot_w / 2:.1f}" y="{_H - 4}" text-anchor="middle">'
        "time (virtual seconds); calls per second on the y axis</text></svg>"
    )
    recovered = ours.recovery_seconds
    if recovered is None or math.isinf(recovered):
        back = "new requests still failed when the run ended"
    else:
        back = f"back {fmt_seconds(recovered)} after the outage ended"
    legend = (
        '<p class="legend"><span class="key sim-ours"></span> these settings '
        '<span class="key sim-plain"></span> no retries <span class="key sim-outage"></span> outage · '
        + esc(
            f"{ours.amplification:.2f} calls per request (no retries: {plain.amplification:.2f}); "
            f"{ours.calls_during_incident} calls during the outage; {back}; "
            f"breaker opened {ours.breaker_openings} times"
        )
        + ". Try other values with <code>bounceback simulate</code>.</p>"
    )
    return "".join(parts) + legend
