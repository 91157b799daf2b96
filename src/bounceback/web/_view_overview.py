"""The overview page: every breaker with its state and controls, and every operation's recent record."""

from __future__ import annotations

from bounceback.web._html import attr, post_button, table
from bounceback.web._model import BreakerView, Snapshot
from bounceback.web._text import esc, fmt_clock, fmt_seconds

__all__ = ["breaker_status", "overview_body", "render_overview"]

_STATE_TEXT = {
    "closed": "closed",
    "open": "open",
    "half_open": "half-open",
    "forced_open": "forced open",
    "disabled": "disabled",
}


def breaker_status(brk: BreakerView, now: float) -> str:
    """The status indicator of one breaker: a coloured badge, and the countdown to the probe while open.

    >>> from bounceback.web._model import BreakerView
    >>> html = breaker_status(BreakerView("db", "open", 100.0, 130.0, "", 10, 6), now=110.0)
    >>> 'data-until="130.000"' in html and "20 s" in html
    True
    """
    state = brk.state if brk.state in _STATE_TEXT else "unknown"
    label = _STATE_TEXT.get(brk.state, brk.state)
    badge = f'<span class="status status-{attr(state)}">{esc(label)}</span>'
    if brk.state == "open" and brk.open_until is not None:
        left = brk.open_until - now
        text = f"probe in {fmt_seconds(left)}" if left > 0 else "probe due"
        badge += (
            f' <span class="countdown" data-until="{brk.open_until:.3f}" data-prefix="probe in " '
            f'data-done="probe due">{esc(text)}</span>'
        )
    elif brk.state == "half_open":
        badge += ' <span class="countdown">probing</span>'
    elif brk.state == "forced_open":
        badge += ' <span class="countdown">until a person closes it</span>'
    return badge


def _controls(brk: BreakerView, csrf: str) -> str:
    buttons = []
    if brk.state != "forced_open":
        buttons.append(
            post_button("/breakers/control", "Force open", csrf, hidden={"name": brk.name, "action": "open"})
        )
    if brk.state != "closed":
        buttons.append(
            post_button(
                "/breakers/control", "Force close", csrf, hidden={"name": brk.name, "action": "close"}
            )
        )
    buttons.append(
        post_button(
            "/breakers/control", "Reset", csrf, hidden={"name": brk.name, "action": "reset"}, css="quiet"
        )
    )
    return "".join(buttons)


def _breaker_row(brk: BreakerView, now: float, csrf: str) -> str:
    if brk.calls:
        rate = f'{brk.failure_rate:.0f}%<span class="sub"> of {brk.calls} calls</span>'
    else:
        rate = '<span class="sub">no calls</span>'
    return (
        f'<tr data-breaker="{attr(brk.name)}" class="state-{attr(brk.state)}">'
        f"<th scope=row>{esc(brk.name)}</th>"
        f'<td class="state">{breaker_status(brk, now)}</td>'
        f'<td class="num">{rate}</td>'
        f'<td class="num">{brk.consecutive}</td>'
        f'<td class="num">{brk.rejected}</td>'
        f'<td class="reason">{esc(brk.reason, 200)}</td>'
        f"<td>{esc(fmt_clock(brk.since if brk.since > 0 else None))}</td>"
        f'<td class="controls">{_controls(brk, csrf)}</td></tr>'
    )


def _operation_rows(snapshot: Snapshot) -> list[str]:
    tally: dict[str, list[int]] = {}
    for run in snapshot.runs:
        row = tally.setdefault(run.operation, [0, 0, 0, 0, 0])
        row[0] += 1
        row[1] += run.status == "recovered"
        row[2] += run.status == "gave-up"
        row[3] += run.status == "running"
        row[4] += sum(1 for a in snapshot.attempts.get(run.run_id, ()) if a.outcome == "failed")
    breakers = {b.name: b for b in snapshot.breakers}
    rows = []
    for name in snapshot.operations:
        runs, ok, gave_up, running, failed = tally.get(name, [0, 0, 0, 0, 0])
        brk = breakers.get(name)
        state = breaker_status(brk, snapshot.now) if brk else '<span class="sub">no breaker</span>'
        live = f'<a href="/recoveries">{running} running</a>' if running else "0"
        rows.append(
            f'<tr data-operation="{attr(name)}"><th scope=row>'
            f'<a href="/timeline?op={attr(name)}">{esc(name)}</a></th>'
            f'<td class="num">{runs}</td><td class="num">{ok}</td><td class="num">{gave_up}</td>'
            f'<td class="num">{live}</td><td class="num">{failed}</td><td>{state}</td>'
            f'<td><a href="/settings?op={attr(name)}">settings</a></td></tr>'
        )
    return rows


def render_overview(snapshot: Snapshot, csrf: str) -> dict[str, str]:
    """The regions of the overview page.

    >>> sorted(render_overview(Snapshot(now=0.0), "t0k"))
    ['overview-breakers', 'overview-cards', 'overview-operations']
    """
    now = snapshot.now
    open_count = sum(1 for b in snapshot.breakers if b.state in ("open", "forced_open"))
    cards = (
        f'<div class="card{" alert" if open_count else ""}"><span class="big">{open_count}</span> '
        f"breaker{'s' if open_count != 1 else ''} open of {len(snapshot.breakers)}</div>"
        f'<div class="card"><span class="big">{len(snapshot.active)}</span> '
        f'<a href="/recoveries">active recover{"ies" if len(snapshot.active) != 1 else "y"}</a></div>'
        f'<div class="card{" alert" if snapshot.waiting_tickets else ""}">'
        f'<span class="big">{len(snapshot.waiting_tickets)}</span> '
        f'<a href="/tickets">ticket{"s" if len(snapshot.waiting_tickets) != 1 else ""} waiting</a></div>'
    )
    breakers = table(
        ["breaker", "status", "failure rate#", "in a row#", "rejected (1 h)#", "reason", "since", ""],
        (_breaker_row(b, now, csrf) for b in snapshot.breakers),
        empty="No breaker has stored its state in this home database yet.",
        css="breakers",
    )
    operations = table(
        [
            "operation",
            "recoveries (1 h)#",
            "recovered#",
            "gave up#",
            "running#",
            "failed attempts#",
            "breaker",
            "",
        ],
        _operation_rows(snapshot),
        empty="No operation has been seen yet.",
        css="operations",
    )
    return {"overview-cards": cards, "overview-breakers": breakers, "overview-operations": operations}


def overview_body(regions: dict[str, str]) -> str:
    """Lay the overview regions out."""
    return (
        "<h1>Overview</h1>"
        f'<div id="overview-cards" class="cards" data-live>{regions["overview-cards"]}</div>'
        "<h2>Breakers</h2>"
        f'<div id="overview-breakers" data-live>{regions["overview-breakers"]}</div>'
        "<h2>Operations</h2>"
        f'<div id="overview-operations" data-live>{regions["overview-operations"]}</div>'
    )
