"""The backoff plot of the settings page: the waits the current values produce, with the jitter band.

Inline SVG, coloured by CSS classes only (the Content-Security-Policy allows no inline style). For each
retry it draws the band the jitter can reach (``Backoff.bounds``), the un-jittered base delay as a line, and
one sample schedule (a fixed seed, so the picture does not flicker on every refresh) as dots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bounceback.core.retry._backoff import Backoff
from bounceback.errors import ConfigError
from bounceback.web.views._text import esc, fmt_seconds

__all__ = ["MAX_PLOTTED", "backoff_plot", "nice_ceiling"]

MAX_PLOTTED = 12
"""The most retries drawn (a schedule of 1000 attempts would be a grey smear)."""

_W, _H = 620, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 14, 40


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is >= ``value`` (axis tops).

    >>> nice_ceiling(0.73), nice_ceiling(7.2), nice_ceiling(30), nice_ceiling(0)
    (1.0, 10.0, 50.0, 1.0)
    """
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power: float = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power


def backoff_plot(values: Mapping[str, Any], *, seed: int = 7) -> str:
    """An SVG figure of the waits between attempts for resolved settings ``values`` (``retry.*`` keys).

    >>> from bounceback.core.settings._source import defaults
    >>> svg = backoff_plot(defaults())
    >>> svg.count('class="band"'), "<script" in svg
    (4, False)
    """
    try:
        backoff = Backoff(
            values["retry.backoff"],
            initial=values["retry.initial_delay"],
            max_delay=values["retry.max_delay"],
            multiplier=values["retry.multiplier"],
            jitter=values["retry.jitter"],
        )
    except ConfigError as exc:
        return f'<p class="field-error">These values give no schedule: {esc(exc)}</p>'
    retries = max(0, min(int(values["retry.max_attempts"]) - 1, MAX_PLOTTED))
    if retries == 0:
        return '<p class="empty">One attempt in all: there is no wait to plot.</p>'
    bands = [backoff.bounds(n) for n in range(retries)]
    bases = [backoff.base(n) for n in range(retries)]
    sample = backoff.schedule(retries, seed=seed)
    top = nice_ceiling(max(*(hi for _, hi in bands), *sample))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / retries

    def y(seconds: float) -> float:
        return _TOP + plot_h * (1 - min(seconds, top) / top)

    parts = [
        f'<svg class="plot" viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="plot-title" '
        'xmlns="http://www.w3.org/2000/svg">',
        '<title id="plot-title">Wait before each retry: jitter band, base delay and one sample</title>',
    ]
    for i in range(5):
        seconds = top * i / 4
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(seconds):.1f}" y2="{y(seconds):.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y(seconds) + 4:.1f}" text-anchor="end">'
            f"{esc(fmt_seconds(seconds))}</text>"
        )
    for n, (low, high) in enumerate(bands):
        x = _LEFT + n * step
        parts.append(
            f'<rect class="band" x="{x + step * 0.15:.1f}" width="{step * 0.7:.1f}" y="{y(high):.1f}" '
            f'height="{max(y(low) - y(high), 1.0):.1f}"><title>retry {n + 1}: '
            f"{esc(fmt_seconds(low))} to {esc(fmt_seconds(high))}</title></rect>"
            f'<text class="tick" x="{x + step / 2:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">'
            f"{n + 1}</text>"
        )
    points = " ".join(f"{_LEFT + (n + 0.5) * step:.1f},{y(b):.1f}" for n, b in enumerate(bases))
    parts.append(f'<polyline class="base" points="{points}"/>')
    parts.extend(
        f'<circle class="sample" cx="{_LEFT + (n + 0.5) * step:.1f}" cy="{y(s):.1f}" r="4">'
        f"<title>sample wait {n + 1}: {esc(fmt_seconds(s))}</title></circle>"
        for n, s in enumerate(sample)
    )
    parts.append(
        f'<text class="axis" x="{_LEFT + plot_w / 2:.1f}" y="{_H - 6}" text-anchor="middle">retry</text>'
        "</svg>"
    )
    worst = sum(high for _, high in bands)
    more = int(values["retry.max_attempts"]) - 1 - retries
    notes = [
        f"{retries} wait{'s' if retries > 1 else ''} shown",
        f"longest total wait {fmt_seconds(worst)}" + (" (first waits only)" if more > 0 else ""),
    ]
    deadline = values.get("retry.deadline")
    if deadline is not None:
        notes.append(f"deadline {fmt_seconds(float(deadline))} for the whole call")
    legend = (
        '<p class="legend"><span class="key band"></span> jitter band '
        '<span class="key base"></span> base delay <span class="key sample"></span> one sample · '
        + esc(" · ".join(notes))
        + "</p>"
    )
    return "".join(parts) + legend
