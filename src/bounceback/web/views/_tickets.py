"""The tickets page: the manual-recovery queue with guidance, ranked choices and resolve buttons.

Choices come ranked by their past record for the same operation and error topic (the first is
highlighted). ``retry-adjusted`` carries its suggested limits in two small fields a person may change;
each guidance step can be marked "not useful", which lowers it for the next ticket of its kind.
"""

from __future__ import annotations

from bounceback.web._model import ChoiceView, Snapshot, TicketView
from bounceback.web.views._html import attr, post_button, table
from bounceback.web.views._text import esc, fmt_clock, fmt_seconds, plural

__all__ = ["render_tickets", "tickets_body"]


def _choice(ticket: TicketView, choice: ChoiceView, first: bool, csrf: str) -> str:
    record = f'<span class="record">{esc(choice.record)}</span>' if choice.record else ""
    detail = f'<span class="sub">{esc(choice.detail, 200)}</span>' if choice.detail else ""
    css = "primary" if first else ""
    css_attr = ' class="primary"' if first else ""
    if choice.key == "retry-adjusted":
        attempts = "" if choice.attempts is None else str(choice.attempts)
        deadline = "" if choice.deadline is None else f"{choice.deadline:g}"
        button = (
            '<form method="post" action="/tickets/resolve" class="inline adjusted">'
            f'<input type="hidden" name="csrf" value="{attr(csrf)}">'
            f'<input type="hidden" name="ticket_id" value="{attr(ticket.ticket_id)}">'
            '<input type="hidden" name="choice" value="retry-adjusted">'
            f'<button type="submit"{css_attr}>{esc(choice.label)}</button> '
            f'<label>attempts <input type="text" name="attempts" value="{attr(attempts)}" class="small" '
            'inputmode="numeric"></label> '
            f'<label>deadline (s) <input type="text" name="deadline" value="{attr(deadline)}" class="small" '
            'inputmode="decimal"></label></form>'
        )
    else:
        button = post_button(
            "/tickets/resolve",
            choice.label,
            csrf,
            hidden={"ticket_id": ticket.ticket_id, "choice": choice.key},
            css=css,
        )
    return f'<li class="choice" data-choice="{attr(choice.key)}">{button}{record}{detail}</li>'


def _card(ticket: TicketView, csrf: str, now: float | None = None) -> str:
    steps = []
    for step in ticket.guidance:
        record = f' <span class="record">{esc(step.record)}</span>' if step.record else ""
        mark = post_button(
            "/tickets/not-useful",
            "not useful",
            csrf,
            hidden={"ticket_id": ticket.ticket_id, "step": step.key},
            css="quiet",
        )
        steps.append(f'<li data-step="{attr(step.key)}">{esc(step.text, 600)}{record} {mark}</li>')
    guidance = f'<ol class="guidance">{"".join(steps)}</ol>' if steps else '<p class="sub">No guidance.</p>'
    choices = "".join(_choice(ticket, c, i == 0, csrf) for i, c in enumerate(ticket.choices))
    kind = f' <span class="kind kind-{attr(ticket.kind)}">{esc(ticket.kind)}</span>' if ticket.kind else ""
    why = f" · stopped: {esc(ticket.reason, 80)}" if ticket.reason else ""
    return (
        f'<article class="ticket" data-ticket="{attr(ticket.ticket_id)}">'
        f'<header><h2>{esc(ticket.operation)} <span class="sub">ticket {esc(ticket.ticket_id, 60)}</span></h2>'
        f'<span class="sub">opened {esc(fmt_clock(ticket.opened_at, now))} · {plural(ticket.attempts, "attempt")}{why}</span>'
        "</header>"
        f'<p class="error"><span class="error-type">{esc(ticket.error_type, 120)}</span>: '
        f'<span class="error-text">{esc(ticket.error)}</span>{kind}</p>'
        f"<h3>What to check</h3>{guidance}"
        f'<h3>What to do</h3><ol class="choices">{choices}</ol></article>'
    )


def _resolved_row(ticket: TicketView, now: float) -> str:
    outcome = ""
    if ticket.outcome:
        outcome = f' <span class="status status-{attr(ticket.outcome)}">{esc(ticket.outcome)}</span>'
    ago = f" ({fmt_seconds(now - ticket.resolved_at)} ago)" if ticket.resolved_at else ""
    return (
        f'<tr data-ticket="{attr(ticket.ticket_id)}"><th scope=row>{esc(ticket.operation)}</th>'
        f"<td>{esc(ticket.ticket_id, 60)}</td><td>{esc(ticket.choice or '-')}{outcome}</td>"
        f"<td>{esc(ticket.resolved_by or '-', 120)}</td>"
        f"<td>{esc(fmt_clock(ticket.resolved_at, now))}{esc(ago)}</td>"
        f'<td class="error">{esc(ticket.error_type, 80)}: {esc(ticket.error, 160)}</td></tr>'
    )


def render_tickets(snapshot: Snapshot, csrf: str) -> dict[str, str]:
    """The regions of the tickets page.

    >>> from bounceback.web._model import ChoiceView, TicketView
    >>> t = TicketView("t1", "fetch", "open", 100.0, "OSError", "refused", choices=(ChoiceView("retry", "Retry now"),))
    >>> "Retry now" in render_tickets(Snapshot(now=101.0, tickets=(t,)), "t0k")["tickets-open"]
    True
    """
    waiting = snapshot.waiting_tickets
    cards = "".join(_card(t, csrf, snapshot.now) for t in waiting)
    open_html = cards or '<p class="empty">No ticket is waiting for a person.</p>'
    resolved = sorted(
        (t for t in snapshot.tickets if not t.is_open), key=lambda t: -(t.resolved_at or t.opened_at)
    )
    done = table(
        ["operation", "ticket", "choice", "by", "when", "error"],
        (_resolved_row(t, snapshot.now) for t in resolved[:20]),
        empty="No ticket resolved recently.",
    )
    return {"tickets-open": open_html, "tickets-resolved": done}


def tickets_body(regions: dict[str, str]) -> str:
    """Lay the tickets regions out."""
    return (
        "<h1>Tickets</h1>"
        '<p class="lead">Recoveries that automatic retries could not finish wait here for a person. '
        "Choices are ranked by how often they worked before for the same operation and error.</p>"
        f'<div id="tickets-open" data-live>{regions["tickets-open"]}</div>'
        "<h2>Recently resolved</h2>"
        f'<div id="tickets-resolved" data-live>{regions["tickets-resolved"]}</div>'
    )
