"""The page frame and the few HTML building blocks every view uses.

Views build HTML as strings. The rule that keeps them safe: every value that is not a literal of this
package goes through :func:`~bounceback.web.views._text.esc` (text) or :func:`attr` (attribute values) on its way
in. There is no inline script and no inline style anywhere (the Content-Security-Policy forbids both), so
behaviour lives in ``static/app.js`` and looks in ``static/style.css``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bounceback.web.views._text import esc

__all__ = [
    "NAV",
    "PageFrame",
    "attr",
    "post_button",
    "problems_html",
    "render_page",
    "table",
    "ticket_badge",
]

NAV = (
    ("overview", "/", "Overview"),
    ("recoveries", "/recoveries", "Active recoveries"),
    ("timeline", "/timeline", "Timeline"),
    ("settings", "/settings", "Settings"),
    ("tickets", "/tickets", "Tickets"),
)
"""The pages: view name, path, title."""


def attr(value: object) -> str:
    """An attribute value, escaped (quotes included); use inside double quotes.

    >>> attr('a"b<c')
    'a&quot;b&lt;c'
    """
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class PageFrame:
    """What the frame around every page needs: the view, its query, the CSRF token, and facts for the footer.

    >>> PageFrame("overview", csrf="t0k", server_now=1.0).title
    'Overview'
    """

    view: str
    csrf: str
    server_now: float
    query: str = ""
    database: str = ""
    flash: str = ""
    flash_error: bool = False
    waiting_tickets: int = 0
    problems: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The page title from :data:`NAV`."""
        return next((title for name, _, title in NAV if name == self.view), self.view.title())


def render_page(frame: PageFrame, body: str) -> str:
    """A whole HTML document: head (CSRF meta, stylesheet, deferred script), navigation, ``body``.

    >>> page = render_page(PageFrame("overview", csrf="t0k", server_now=1.0), "<p>hi</p>")
    >>> '<meta name="csrf-token" content="t0k">' in page and "<script" in page and "onclick" not in page
    True
    """
    links = []
    for name, path, title in NAV:
        current = ' aria-current="page"' if name == frame.view else ""
        badge = ""
        if name == "tickets":
            badge = f' <span id="nav-tickets" data-live>{ticket_badge(frame.waiting_tickets)}</span>'
        links.append(f'<a href="{path}"{current}>{title}{badge}</a>')
    flash = ""
    if frame.flash:
        css = "flash error" if frame.flash_error else "flash"
        flash = f'<p class="{css}" role="status">{esc(frame.flash)}</p>'
    problems = f'<div id="problems" data-live>{problems_html(frame.problems)}</div>'
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>bounceback · {attr(frame.title)}</title>"
        f'<meta name="csrf-token" content="{attr(frame.csrf)}">'
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/style.css">'
        '<script src="/static/app.js" defer></script>'
        "</head>"
        f'<body data-view="{attr(frame.view)}" data-query="{attr(frame.query)}" '
        f'data-server-now="{frame.server_now:.3f}">'
        '<header class="top"><a class="brand" href="/">bounceback</a>'
        f"<nav>{''.join(links)}</nav>"
        '<span class="live" id="live-status" data-state="connecting">connecting…</span>'
        '<button type="button" class="quiet" id="enable-notifications" hidden>Enable notifications</button>'
        "</header>"
        '<div id="notices" aria-live="polite"></div>'
        f'<main id="main">{problems}{flash}{body}</main>'
        f"<footer>home database <code>{esc(frame.database)}</code></footer>"
        "</body></html>\n"
    )


def ticket_badge(waiting: int) -> str:
    """The count of waiting tickets next to the Tickets link (empty when none).

    >>> ticket_badge(2)
    '<span class="badge">2</span>'
    """
    return f'<span class="badge">{waiting}</span>' if waiting else ""


def problems_html(problems: Iterable[str]) -> str:
    """The warning shown on every page when part of the database could not be read."""
    items = "".join(f"<li>{esc(p, 400)}</li>" for p in problems)
    return f'<ul class="problems" role="alert">{items}</ul>' if items else ""


def post_button(
    action: str,
    label: str,
    csrf: str,
    *,
    hidden: Mapping[str, str] | None = None,
    css: str = "",
    confirm: str = "",
) -> str:
    """A one-button form that POSTs to ``action`` with the CSRF token (and ``hidden`` fields).

    ``confirm`` (text) makes ``app.js`` ask before sending.

    >>> "csrf" in post_button("/runs/r1/cancel", "Cancel", "t0k")
    True
    """
    fields = "".join(
        f'<input type="hidden" name="{attr(name)}" value="{attr(value)}">'
        for name, value in (hidden or {}).items()
    )
    confirm_attr = f' data-confirm="{attr(confirm)}"' if confirm else ""
    css_attr = f' class="{attr(css)}"' if css else ""
    return (
        f'<form method="post" action="{attr(action)}" class="inline"{confirm_attr}>'
        f'<input type="hidden" name="csrf" value="{attr(csrf)}">{fields}'
        f'<button type="submit"{css_attr}>{esc(label)}</button></form>'
    )


def table(headers: Iterable[str], rows: Iterable[str], *, empty: str, css: str = "") -> str:
    """A table with a header row and pre-rendered ``<tr>`` rows, or the ``empty`` text when there are none.

    A header ending in ``#`` (``"attempts#"``) marks a numeric column.

    >>> out = table(["name", "calls#"], ["<tr><td>a</td><td class=num>1</td></tr>"], empty="none")
    >>> out.startswith('<div class="table-wrap"><table class="stack"><thead><tr><th>name</th>')
    True
    >>> '<td data-label="calls" class=num>1</td>' in out
    True
    """
    rows_list = list(rows)
    headers = list(headers)
    if not rows_list:
        return f'<p class="empty">{esc(empty)}</p>'
    # A header ending in "#" heads a column of numbers (right-aligned like them).
    head = "".join(
        f'<th class="num">{esc(h[:-1])}</th>' if h.endswith("#") else f"<th>{esc(h)}</th>" for h in headers
    )
    css_attr = f' class="{attr(("stack " + css).strip())}"'
    # On a phone every row becomes a card of "label: value" lines (style.css); the labels are the headers.
    labels = [h[:-1] if h.endswith("#") else h for h in headers]
    body = "".join(_labelled(row, labels) for row in rows_list)
    return (
        f'<div class="table-wrap"><table{css_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


_CELL = re.compile(r"<(td|th)(?=[\s>])")


def _labelled(row: str, labels: list[str]) -> str:
    """``row`` with ``data-label`` on its cells, in column order (our own markup: cells are not nested)."""
    column = iter(labels)

    def add(match: re.Match[str]) -> str:
        label = next(column, "")
        return f'<{match.group(1)} data-label="{attr(label)}"' if label else match.group(0)

    return _CELL.sub(add, row)
