"""The overview page: every breaker with its state and controls, and every operation's recent record."""

from __future__ import annotations

from bounceback.web._model import BreakerView, LimitView, Snapshot
from bounceback.web.views._html import attr, post_button, table
from bounceback.web.views._text import esc, fmt_clock, fmt_seconds, plural, singular_one

__all__ = [
    "ATTENTION",
    "breaker_status",
    "chaos_operations",
    "overview_body",
    "render_overview",
    "why_closed",
]

ATTENTION = ("forced_open", "open", "half_open")
"""The states a person must see first, in this order (they refuse or probe calls)."""

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
        text = f"probe in {fmt_seconds(left)}" if left > 0 else "next call probes"
        # When the countdown ends before the next snapshot, the page says what the breaker will do;
        # the next snapshot (within two seconds) shows it half-open, read live.
        badge += (
            f' <span class="countdown" data-until="{brk.open_until:.3f}" data-prefix="probe in " '
            f'data-done="next call probes">{esc(text)}</span>'
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


def why_closed(brk: BreakerView) -> str:
    """Why a closed breaker with failures in its window stays closed (empty when there is nothing to say).

    >>> why_closed(BreakerView("db", "closed", 0.0, None, "", 5, 5, min_calls=10, threshold=50))
    'stays closed: 5 of the 10 calls needed before the failure rate counts (breaker.min_calls)'
    >>> why_closed(BreakerView("db", "closed", 0.0, None, "", 20, 4, min_calls=10, threshold=50))
    'stays closed: 20% is below the 50% that opens it (breaker.failure_rate)'
    """
    if brk.state != "closed" or not brk.failures:
        return ""
    if brk.min_calls and brk.calls < brk.min_calls:
        return (
            f"stays closed: {brk.calls} of the {plural(brk.min_calls, 'call')} needed before the failure "
            "rate counts (breaker.min_calls)"
        )
    if brk.threshold and brk.failure_rate < brk.threshold:
        return (
            f"stays closed: {brk.failure_rate:.0f}% is below the {brk.threshold:.0f}% that opens it "
            "(breaker.failure_rate)"
        )
    return ""


def _reason(brk: BreakerView) -> str:
    reason = singular_one(brk.reason.strip())
    # "forced open" beside a "forced open" badge says nothing new.
    if reason.lower() in {_STATE_TEXT.get(brk.state, ""), brk.state, "forced open", "forced closed"}:
        reason = ""
    why = why_closed(brk)
    parts = [esc(reason, 200)] if reason else []
    if why:
        parts.append(f'<span class="why">{esc(why)}</span>')
    return "<br>".join(parts)


def _breaker_row(brk: BreakerView, now: float, csrf: str) -> str:
    if brk.calls:
        rate = f'{brk.failure_rate:.0f}%<span class="sub"> of {plural(brk.calls, "call")}</span>'
    else:
        rate = '<span class="sub">no calls</span>'
    return (
        f'<tr data-breaker="{attr(brk.name)}" class="state-{attr(brk.state)}">'
        f"<th scope=row>{esc(brk.name)}</th>"
        f'<td class="state">{breaker_status(brk, now)}</td>'
        f'<td class="num">{rate}</td>'
        f'<td class="num">{brk.consecutive}</td>'
        f'<td class="num">{brk.rejected}</td>'
        f'<td class="reason">{_reason(brk)}</td>'
        f"<td>{esc(fmt_clock(brk.since if brk.since > 0 else None, now))}</td>"
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


def chaos_operations(snapshot: Snapshot) -> list[str | None]:
    """Where the stored settings switch fault injection on: ``None`` for every operation, then names.

    >>> chaos_operations(Snapshot(now=0.0, settings={"pricing": {"chaos.enabled": True}}))
    ['pricing']
    """
    everywhere = bool(snapshot.settings.get(None, {}).get("chaos.enabled", False))
    found: list[str | None] = [None] if everywhere else []
    if everywhere:
        return found  # an operation that switches it off again still reads as "every operation": be loud
    for op, values in sorted((k, v) for k, v in snapshot.settings.items() if k is not None):
        if bool(values.get("chaos.enabled", False)):
            found.append(op)
    return found


def render_overview(snapshot: Snapshot, csrf: str) -> dict[str, str]:
    """The regions of the overview page.

    >>> sorted(render_overview(Snapshot(now=0.0), "t0k"))
    ['overview-breakers', 'overview-cards', 'overview-operations']
    """
    now = snapshot.now
    attention = [b for b in snapshot.breakers if b.state in ATTENTION]
    count = len(attention)
    if count:
        kinds = ", ".join(
            f"{n} {_STATE_TEXT[state]}"
            for state in ATTENTION
            if (n := sum(1 for b in attention if b.state == state))
        )
        headline = (
            f'<a href="#breakers">{"breaker" if count == 1 else "breakers"} not closed</a>'
            f'<span class="sub"> ({esc(kinds)}) of {len(snapshot.breakers)}</span>'
        )
    else:
        headline = f"breakers not closed of {len(snapshot.breakers)}"
    active, waiting = len(snapshot.active), len(snapshot.waiting_tickets)
    chaos = chaos_operations(snapshot)
    banner = ""
    if chaos:
        # Fault injection must never run unnoticed: the first card, in the alert style, on every refresh.
        where = ", ".join("every operation" if op is None else op for op in chaos)
        banner = (
            f'<div class="card alert" id="card-chaos"><span class="big">CHAOS</span> fault injection is ON '
            f'for {esc(where)} <span class="sub">(chaos.enabled; <a href="/settings">settings</a>)</span></div>'
        )
    cards = banner + (
        f'<div class="card{" alert" if count else ""}" id="card-breakers"><span class="big">{count}</span> '
        f"{headline}</div>"
        f'<div class="card"><span class="big">{active}</span> '
        f'<a href="/recoveries">active recover{"ies" if active != 1 else "y"}</a></div>'
        f'<div class="card{" alert" if waiting else ""}">'
        f'<span class="big">{waiting}</span> '
        f'<a href="/tickets">ticket{"s" if waiting != 1 else ""} waiting</a></div>'
    )
    # Breakers that refuse or probe calls first (forced open, open, half-open), then the rest by name.
    rank = {state: i for i, state in enumerate(ATTENTION)}
    ordered = sorted(snapshot.breakers, key=lambda b: (rank.get(b.state, len(ATTENTION)), b.name))
    breakers = table(
        ["breaker", "status", "failure rate#", "in a row#", "rejected (1 h)#", "reason", "since", ""],
        (_breaker_row(b, now, csrf) for b in ordered),
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
    if snapshot.limits:
        operations += '<h2 id="limits">Limits</h2>' + table(
            ["limiter", "kind", "in use#", "of#", "waiting#", "refused#", "processes#"],
            (_limit_row(lim) for lim in snapshot.limits),
            empty="",
            css="limits",
        )
    return {"overview-cards": cards, "overview-breakers": breakers, "overview-operations": operations}


def _limit_row(lim: LimitView) -> str:
    """One limiter: calls in flight of the room (concurrency), or tokens left at a rate (rate limit: the
    tokens are what is *not* in use, so the cell says "left").

    A shared limiter shows the fleet's limit once and the fleet's count from its store, labelled shared.

    >>> ">3 (38%)<" in _limit_row(LimitView("search", "concurrency", 3.0, 1, 8.0, 0, 2))
    True
    >>> ">2.5 tokens left<" in _limit_row(LimitView("quotes", "rate", 2.5, 0, 10.0, 4, 1))
    True
    >>> row = _limit_row(LimitView("db", "concurrency", 3.0, 0, 4.0, 0, 3, shared="redis://r:6379/0"))
    >>> ">3 (75%)<" in row and ">4 calls<" in row and "shared by 3 processes" in row
    True
    """
    fleet = lim.shared is not None
    if lim.kind == "concurrency":
        used, room = f"{lim.used:g} ({lim.occupancy:.0%})", f"{lim.capacity:g} calls"
    else:
        left = f"{lim.used:.3g}"
        used, room = f"{left} token{'' if left == '1' else 's'} left", f"{lim.capacity:g}/s"
    used_cell = esc(used)
    if fleet and lim.store_unavailable:
        # No process could read the store: its count is unknown; say so rather than show a guess as fact.
        used_cell = (
            f"{lim.used:g} " if lim.kind == "concurrency" else "? "
        ) + '<span class="sub store-unavailable">store unavailable</span>'
    kind = esc(lim.kind)
    if fleet:
        kind += (
            f' <span class="sub shared" title="{attr(lim.shared or "")}">'
            f"shared by {plural(lim.processes, 'process', 'processes')}</span>"
        )
    alert = ' class="state-open"' if lim.kind == "concurrency" and lim.occupancy >= 1 else ""
    shared_attr = f' data-shared="{attr(lim.shared or "")}"' if fleet else ""
    return (
        f'<tr data-limit="{attr(lim.name)}"{shared_attr}{alert}><td>{esc(lim.name)}</td><td>{kind}</td>'
        f"<td class=num>{used_cell}</td><td class=num>{esc(room)}</td><td class=num>{lim.waiting}</td>"
        f"<td class=num>{lim.rejected}</td><td class=num>{lim.processes}</td></tr>"
    )


def overview_body(regions: dict[str, str]) -> str:
    """Lay the overview regions out."""
    return (
        "<h1>Overview</h1>"
        f'<div id="overview-cards" class="cards" data-live>{regions["overview-cards"]}</div>'
        '<h2 id="breakers">Breakers</h2>'
        f'<div id="overview-breakers" data-live>{regions["overview-breakers"]}</div>'
        "<h2>Operations</h2>"
        f'<div id="overview-operations" data-live>{regions["overview-operations"]}</div>'
    )
