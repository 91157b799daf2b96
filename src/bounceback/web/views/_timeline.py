"""The timeline page: recent runs and their attempts on a time axis (inline SVG), filterable by operation.

One lane per run, newest at the top: the operation's full name and start time above a bar from its
first attempt to its end (or now), coloured by outcome; each attempt a dot (red failed, green succeeded)
with its error in a tooltip; each wait that followed a failure a thin line as long as the wait, cut where
the run ended (a cancelled run never draws the wait it did not do). Colours come from CSS classes only.
The SVG is drawn twice, for a desk screen and for a phone (narrow, larger text); CSS shows one.
"""

from __future__ import annotations

from collections.abc import Sequence

from bounceback.web._model import RunView, Snapshot
from bounceback.web.views._html import attr
from bounceback.web.views._text import esc, fmt_clock, fmt_seconds, plural

__all__ = ["MAX_LANES", "render_timeline", "tick_step", "timeline_body", "timeline_svg", "wrap_label"]

MAX_LANES = 40
"""The most runs drawn at once (the newest)."""

_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
_LEFT, _RIGHT, _LANE, _TOP, _AXIS, _TEXT = 12, 20, 40, 8, 30, 16
"""Margins, lane height (a text line above the bar), top, axis band, and the height of the text line."""


def tick_step(span: float, wanted: int = 6) -> float:
    """A round tick interval in seconds giving about ``wanted`` ticks over ``span`` seconds.

    >>> tick_step(60), tick_step(3600), tick_step(3)
    (10, 600, 0.5)
    """
    for step in _STEPS:
        if span / step <= wanted:
            return step
    return _STEPS[-1]


def wrap_label(text: str, limit: int) -> list[str]:
    """``text`` cut into lines of at most ``limit`` characters, after a ``-_./: `` where one is near.

    >>> wrap_label("nightly-export-of-the-plant-historian", 16)
    ['nightly-export-', 'of-the-plant-', 'historian']
    >>> wrap_label("short", 16)
    ['short']
    """
    lines: list[str] = []
    while len(text) > limit:
        cut = max((text.rfind(c, limit // 2, limit) for c in "-_./: "), default=-1)
        cut = cut + 1 if cut > 0 else limit
        lines.append(text[:cut])
        text = text[cut:]
    return [*lines, text] if text or not lines else lines


def _tip(*lines: str) -> str:
    return "<title>" + esc("\n".join(lines), 600) + "</title>"


def timeline_svg(runs: Sequence[RunView], snapshot: Snapshot, width: int = 980, css: str = "wide") -> str:
    """The SVG of ``runs`` (drawn newest first) with their attempts from ``snapshot``, ``width`` units wide."""
    now = snapshot.now
    shown = sorted(runs, key=lambda r: r.started_at, reverse=True)[:MAX_LANES]
    if not shown:
        return ""
    start = min(r.started_at for r in shown)
    end = max(now, *(r.ended_at or r.updated_at for r in shown))
    span = max(end - start, 1.0)
    start -= span * 0.02
    end += span * 0.02
    span = end - start
    plot_w = width - _LEFT - _RIGHT
    # The label of a lane: the full name (wrapped on a narrow drawing), then the start time and status.
    per_line = int(plot_w / (_TEXT * 0.56))
    labels = []
    for run in shown:
        why = f" ({run.reason})" if run.reason else ""
        name = wrap_label(run.operation, per_line)
        when = f"{fmt_clock(run.started_at)} · {run.status}{why}"
        if len(name[-1]) + 1 + len(when) <= per_line:
            labels.append((name, when, False))
        else:
            labels.append((name, when, True))
    tops = []
    y = _TOP
    for name, _, own_line in labels:
        tops.append(y)
        y += _LANE + _TEXT * (len(name) - 1 + own_line)
    axis_y = y
    height = axis_y + _AXIS

    def x(at: float) -> float:
        return _LEFT + plot_w * (min(max(at, start), end) - start) / span

    parts = [
        f'<svg class="timeline {attr(css)}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Runs and attempts over time" xmlns="http://www.w3.org/2000/svg">'
    ]
    step = tick_step(span, wanted=max(2, width // 160))
    tick = (start // step + 1) * step
    while tick < end:
        label = fmt_clock(tick) if step >= 1 else f"{fmt_clock(tick)}.{round(tick % 1 * 10) % 10}"
        parts.append(f'<line class="grid" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{_TOP}" y2="{axis_y}"/>')
        # A label too close to either edge would be cut off by the viewBox.
        if 30 < x(tick) < width - 30:
            parts.append(
                f'<text class="tick" x="{x(tick):.1f}" y="{axis_y + 20}" text-anchor="middle">{esc(label)}</text>'
            )
        tick += step
    parts.append(f'<line class="now" x1="{x(now):.1f}" x2="{x(now):.1f}" y1="{_TOP}" y2="{axis_y}"/>')
    for lane, run in enumerate(shown):
        name, when, own_line = labels[lane]
        y = tops[lane]
        text_lines = len(name) + own_line
        bar_y = y + _TEXT * text_lines + 2
        mid = bar_y + (_LANE - _TEXT - 8) / 2
        finish = run.ended_at if run.ended_at is not None else (now if run.is_active else run.updated_at)
        why = f" ({run.reason})" if run.reason else ""
        # The full name, on its own line(s) above the bar: never cut, never left of the chart.
        spans = "".join(
            f'<tspan x="{_LEFT}" dy="{0 if i == 0 else _TEXT}">{esc(part, 200)}</tspan>'
            for i, part in enumerate(name)
        )
        if own_line:
            spans += f'<tspan class="lane-time" x="{_LEFT}" dy="{_TEXT}">{esc(when, 200)}</tspan>'
        else:
            spans += f' <tspan class="lane-time">{esc(when, 200)}</tspan>'
        parts.append(
            f'<g class="run status-{attr(run.status)}" data-run="{attr(run.run_id)}">'
            f'<text class="lane-label" x="{_LEFT}" y="{y + _TEXT - 3}">{spans}</text>'
            f'<rect class="bar" x="{x(run.started_at):.1f}" y="{bar_y}" '
            f'width="{max(x(finish) - x(run.started_at), 2.0):.1f}" height="{_LANE - _TEXT - 8}" rx="3">'
            + _tip(
                f"{run.operation} · {run.status}{why}",
                f"{fmt_clock(run.started_at)} → {fmt_clock(finish)} · "
                # A command of `bounceback run` is drawn from its first attempt, before anything failed.
                + (
                    f"attempt {run.attempt_now(now)} running"
                    if run.attempt_now(now) > run.attempts
                    else plural(run.attempts, "attempt")
                ),
            )
            + "</rect>"
        )
        for att in snapshot.attempts.get(run.run_id, ()):
            # A wait is drawn only as far as the run went: a run cancelled during its wait did not wait on.
            waited_until = min(att.at + att.delay, finish) if att.delay else att.at
            if waited_until > att.at:
                parts.append(
                    f'<line class="wait" x1="{x(att.at):.1f}" x2="{x(waited_until):.1f}" '
                    f'y1="{mid:.1f}" y2="{mid:.1f}"/>'
                )
            outcome = "succeeded" if att.outcome == "succeeded" else "failed"
            detail = f"{att.error_type or ''}: {att.error or ''}".strip(": ") if outcome == "failed" else "ok"
            wait = ""
            if att.delay and waited_until >= att.at + att.delay:
                wait = f" · then waited {fmt_seconds(att.delay)}"
            elif att.delay:
                wait = f" · waited {fmt_seconds(waited_until - att.at)} of {fmt_seconds(att.delay)}, then stopped"
            parts.append(
                f'<circle class="attempt {outcome}" cx="{x(att.at):.1f}" cy="{mid:.1f}" r="4.5">'
                + _tip(f"attempt {att.attempt} {outcome} at {fmt_clock(att.at)}{wait}", detail)
                + "</circle>"
            )
        if run.is_active and run.next_try_at is not None:
            nx = x(run.next_try_at)
            parts.append(
                f'<path class="next-try" d="M{nx:.1f},{mid - 5:.1f} l5,5 l-5,5 l-5,-5 z">'
                + _tip(f"next try at {fmt_clock(run.next_try_at)}")
                + "</path>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def render_timeline(snapshot: Snapshot, operation: str | None) -> dict[str, str]:
    """The regions of the timeline page, for one operation or all (None).

    >>> from bounceback.web._model import AttemptView, RunView
    >>> run = RunView("r1", "fetch", "recovered", 100.0, 103.0, 103.0, 2, 5)
    >>> att = AttemptView("r1", 1, 100.5, 0.5, "failed", "OSError", "<b>refused</b>", "transient", 2.0)
    >>> svg = render_timeline(Snapshot(now=110.0, runs=(run,), attempts={"r1": (att,)}), None)["timeline"]
    >>> svg.count("<circle"), "&lt;b&gt;refused" in svg  # drawn twice: desk and phone
    (2, True)
    """
    runs = [r for r in snapshot.runs if operation is None or r.operation == operation]
    svg = timeline_svg(runs, snapshot)
    if svg:
        svg += timeline_svg(runs, snapshot, width=420, css="narrow")
    scope = f" of {esc(operation)}" if operation else ""
    if not svg:
        body = f'<p class="empty">No recovery run{scope} in the last hour.</p>'
    else:
        more = len(runs) - MAX_LANES
        note = f'<p class="sub">{plural(more, "older run")} not drawn.</p>' if more > 0 else ""
        body = (
            f"{svg}{note}"
            '<p class="legend"><span class="key ok"></span> succeeded <span class="key failed"></span> failed '
            '<span class="key wait"></span> wait <span class="key next"></span> next try '
            f"· {plural(len(runs[:MAX_LANES]), 'run')}{scope}</p>"
        )
    options = ['<option value="">all operations</option>']
    names = set(snapshot.operations) | ({operation} if operation else set())
    options.extend(
        f'<option value="{attr(n)}"{" selected" if n == operation else ""}>{esc(n)}</option>'
        for n in sorted(names)
    )
    filters = (
        '<form method="get" action="/timeline" class="filter" data-autosubmit>'
        f'<label>operation <select name="op">{"".join(options)}</select></label>'
        "<noscript><button>Show</button></noscript></form>"
    )
    return {"timeline-filter": filters, "timeline": body}


def timeline_body(regions: dict[str, str]) -> str:
    """Lay the timeline regions out."""
    return (
        "<h1>Timeline</h1>"
        f'<div id="timeline-filter" data-live>{regions["timeline-filter"]}</div>'
        f'<div id="timeline" data-live>{regions["timeline"]}</div>'
    )
