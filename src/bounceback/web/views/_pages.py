"""Which regions each page has, and the whole page around them.

A page is a set of **regions**: named pieces of HTML, each a pure function of the snapshot (plus the
page's operation filter and the CSRF token). The first load renders the whole page; the event stream
then re-renders the regions on every new snapshot and sends only those whose HTML changed, and
``app.js`` swaps them in by id. Two regions belong to every page: the ticket count in the navigation and
the list of store problems.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bounceback.web._model import Snapshot
from bounceback.web.views._html import PageFrame, problems_html, render_page, ticket_badge
from bounceback.web.views._overview import overview_body, render_overview
from bounceback.web.views._runs import recoveries_body, render_recoveries
from bounceback.web.views._settings import render_settings, settings_body, settings_query
from bounceback.web.views._tickets import render_tickets, tickets_body
from bounceback.web.views._timeline import render_timeline, timeline_body

__all__ = ["VIEWS", "page_query", "render_full", "render_regions"]

VIEWS = ("overview", "recoveries", "timeline", "settings", "tickets")
"""The page names (as in ``/events?view=``)."""

Regions = dict[str, str]


def _regions(
    view: str, snapshot: Snapshot, operation: str | None, csrf: str, extra: Mapping[str, Mapping[str, str]]
) -> Regions:
    if view == "overview":
        return render_overview(snapshot, csrf)
    if view == "recoveries":
        return render_recoveries(snapshot, csrf)
    if view == "timeline":
        return render_timeline(snapshot, operation)
    if view == "settings":
        return render_settings(
            snapshot, operation, csrf, errors=extra.get("errors"), submitted=extra.get("submitted")
        )
    if view == "tickets":
        return render_tickets(snapshot, csrf)
    raise KeyError(view)


_BODIES: dict[str, Callable[[Regions], str]] = {
    "overview": overview_body,
    "recoveries": recoveries_body,
    "timeline": timeline_body,
    "tickets": tickets_body,
}


def _body(view: str, regions: Regions, operation: str | None) -> str:
    if view == "settings":
        return settings_body(regions, operation)
    return _BODIES[view](regions)


def render_regions(
    view: str,
    snapshot: Snapshot,
    operation: str | None,
    csrf: str,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> Regions:
    """Every live region of page ``view`` (the common ones included), by element id.

    >>> sorted(render_regions("tickets", Snapshot(now=0.0), None, "t0k"))
    ['nav-tickets', 'problems', 'tickets-open', 'tickets-resolved']
    """
    regions = _regions(view, snapshot, operation, csrf, extra or {})
    regions["nav-tickets"] = ticket_badge(len(snapshot.waiting_tickets))
    regions["problems"] = problems_html(snapshot.problems)
    return regions


def page_query(view: str, operation: str | None) -> str:
    """The query string that reproduces a page's filter (for the event stream)."""
    return settings_query(operation) if view in ("settings", "timeline") else ""


def render_full(
    view: str,
    snapshot: Snapshot,
    operation: str | None,
    csrf: str,
    *,
    database: str = "",
    flash: str = "",
    flash_error: bool = False,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """The whole HTML document of page ``view``.

    >>> page = render_full("overview", Snapshot(now=0.0), None, "t0k")
    >>> page.startswith("<!doctype html>") and 'id="overview-breakers"' in page
    True
    """
    regions = render_regions(view, snapshot, operation, csrf, extra)
    frame = PageFrame(
        view,
        csrf=csrf,
        server_now=snapshot.now,
        query=page_query(view, operation),
        database=database,
        flash=flash,
        flash_error=flash_error,
        waiting_tickets=len(snapshot.waiting_tickets),
        problems=snapshot.problems,
    )
    return render_page(frame, _body(view, regions, operation))
