"""The active recoveries page: one row per run going on anywhere on the machine, with a Cancel button."""

from __future__ import annotations

from bounceback.web._model import RunView, Snapshot
from bounceback.web.views._html import attr, post_button, table
from bounceback.web.views._text import esc, fmt_clock, fmt_seconds

__all__ = ["recoveries_body", "render_recoveries", "run_error"]


def run_error(run: RunView, limit: int = 300) -> str:
    """The last error of a run as escaped text: ``TimeoutError: timed out`` (``-`` when none)."""
    if not run.last_error_type and not run.last_error:
        return "-"
    kind = (
        f' <span class="kind kind-{attr(run.last_kind)}">{esc(run.last_kind)}</span>' if run.last_kind else ""
    )
    return (
        f'<span class="error-type">{esc(run.last_error_type or "error", 120)}</span>: '
        f'<span class="error-text">{esc(run.last_error or "", limit)}</span>{kind}'
    )


def _next_try(run: RunView, now: float) -> str:
    if run.next_try_at is None or run.next_try_at <= now:
        return f'<span class="sub">attempt {run.attempt_now(now)} running</span>'
    left = run.next_try_at - now
    return (
        f'<span class="countdown" data-until="{run.next_try_at:.3f}" data-prefix="in " '
        f'data-done="attempt {run.attempts + 1} running">{esc("in " + fmt_seconds(left))}</span>'
    )


def _progress(run: RunView, now: float) -> str:
    """``attempt 2 of 5 running`` while it runs, ``attempt 1 of 5 failed`` during the wait after it."""
    top = run.max_attempts or max(run.attempts, 1)
    current = run.attempt_now(now)
    of = f" of {run.max_attempts}" if run.max_attempts else ""
    state = "running" if current > run.attempts else "failed"
    return (
        f'attempt <span class="attempt-no">{current}</span>{of} <span class="sub">{state}</span> '
        f'<progress max="{top}" value="{min(current, top)}"></progress>'
    )


def _deadline(run: RunView, now: float) -> str:
    if run.deadline_at is None:
        return f'<span class="sub">no deadline · {esc(fmt_seconds(now - run.started_at))} so far</span>'
    total = max(run.deadline_at - run.started_at, 1e-9)
    used = min(max(now - run.started_at, 0.0), total)
    return (
        f'<progress class="deadline" max="{total:.3f}" value="{used:.3f}" data-start="{run.started_at:.3f}" '
        f'data-end="{run.deadline_at:.3f}"></progress> '
        f'<span class="sub">{100 * used / total:.0f}% of {esc(fmt_seconds(total))}</span>'
    )


def _active_row(run: RunView, now: float, csrf: str) -> str:
    if run.cancel_requested:
        action = '<span class="pending">cancel requested…</span>'
    else:
        action = post_button("/runs/cancel", "Cancel", csrf, hidden={"run_id": run.run_id}, css="danger")
    return (
        f'<tr data-run="{attr(run.run_id)}"><th scope=row>{esc(run.operation)}'
        f'<span class="sub"> {esc(run.run_id, 60)}</span></th>'
        f'<td class="progress">{_progress(run, now)}</td>'
        f'<td class="next">{_next_try(run, now)}</td>'
        f'<td class="deadline">{_deadline(run, now)}</td>'
        f'<td class="error">{run_error(run)}</td>'
        f'<td class="sub">pid {run.pid} on {esc(run.host, 60)}</td>'
        f'<td class="controls">{action}</td></tr>'
    )


def _ended_row(run: RunView, now: float) -> str:
    why = f" ({esc(run.reason, 80)})" if run.reason else ""
    duration = (run.ended_at or run.updated_at) - run.started_at
    return (
        f'<tr data-run="{attr(run.run_id)}" class="ended ended-{attr(run.status)}">'
        f"<th scope=row>{esc(run.operation)}</th>"
        f'<td><span class="status status-{attr(run.status)}">{esc(run.status)}</span>{why}</td>'
        f'<td class="num">{run.attempts}</td><td>{esc(fmt_seconds(duration))}</td>'
        f"<td>{esc(fmt_clock(run.ended_at or run.updated_at, now))}</td>"
        f'<td class="error">{run_error(run, 160)}</td></tr>'
    )


def render_recoveries(snapshot: Snapshot, csrf: str) -> dict[str, str]:
    """The regions of the active recoveries page.

    >>> from bounceback.web._model import RunView
    >>> run = RunView("r1", "fetch", "running", 100.0, 101.0, None, 2, 5, next_try_at=104.0)
    >>> regions = render_recoveries(Snapshot(now=102.0, runs=(run,)), "t0k")
    >>> 'attempt <span class="attempt-no">2</span> of 5' in regions["recoveries-active"]
    True
    >>> "Cancel" in regions["recoveries-active"]
    True
    """
    now = snapshot.now
    active = table(
        ["operation", "progress", "next try", "deadline used", "last error", "where", ""],
        (_active_row(r, now, csrf) for r in snapshot.active),
        empty="No recovery is running anywhere on this machine.",
        css="runs",
    )
    ended = sorted((r for r in snapshot.runs if not r.is_active), key=lambda r: -(r.ended_at or r.updated_at))
    recent = table(
        ["operation", "outcome", "attempts#", "took", "ended", "last error"],
        (_ended_row(r, now) for r in ended[:15]),
        empty="No recovery ended in the last hour.",
        css="runs ended",
    )
    return {"recoveries-active": active, "recoveries-recent": recent}


def recoveries_body(regions: dict[str, str]) -> str:
    """Lay the recoveries regions out."""
    return (
        "<h1>Active recoveries</h1>"
        '<p class="lead">Every automatic recovery running on this machine, and every command of '
        "<code>bounceback run</code> from its first attempt. <strong>Cancel</strong> ends a wait at once "
        "and hands the run to manual recovery; a command run by <code>bounceback run</code> is stopped "
        "within a second, a library call ends after its current attempt.</p>"
        f'<div id="recoveries-active" data-live>{regions["recoveries-active"]}</div>'
        "<h2>Recently ended</h2>"
        f'<div id="recoveries-recent" data-live>{regions["recoveries-recent"]}</div>'
    )
