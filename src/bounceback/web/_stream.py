"""``GET /events``: the server-sent event stream that keeps a page live.

Query: ``view`` (the page), ``op`` (its operation filter), ``since`` (the snapshot version the page was
rendered from) and ``notices`` (the last notice the page knows). The stream sends

``event: regions``
    ``{"version", "now", "changed_at", "regions": {id: html}}``: the regions whose HTML differs from what
    this stream sent before (all of them the first time), for every snapshot newer than ``since``;
``event: notice``
    one notification (breaker opened, recovery gave up, ticket waiting) as JSON;
a comment
    every 15 s without news, so proxies and the browser keep the connection.

It ends when the client goes away or the server shuts down (checked at least once a second).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bounceback.errors import ConfigError
from bounceback.web._context import Dashboard, dashboard_of
from bounceback.web.views._pages import VIEWS, render_regions

__all__ = ["KEEPALIVE_SECONDS", "event_routes", "sse"]

KEEPALIVE_SECONDS = 15.0
"""Longest silence on a stream."""


def sse(event: str, data: object) -> str:
    """One server-sent event with a JSON payload (JSON has no raw newlines, so one ``data`` line).

    >>> sse("notice", {"title": "a\\nb"})
    'event: notice\\ndata: {"title": "a\\\\nb"}\\n\\n'
    """
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(', ', ': '))}\n\n"


def _int(raw: str | None) -> int:
    return int(raw) if raw is not None and raw.isdigit() and len(raw) < 19 else 0


async def _stream(
    board: Dashboard, view: str, operation: str | None, since: int, notice_seq: int
) -> AsyncIterator[str]:
    live = board.live
    csrf = board.policy.csrf
    sent: dict[str, str] = {}
    version = since
    quiet = 0.0
    yield "retry: 1000\n\n"
    while not board.stopping():
        snapshot = await live.wait(version, timeout=1.0)
        if snapshot is None:
            quiet += 1.0
            if quiet >= KEEPALIVE_SECONDS:
                quiet = 0.0
                yield ": keep-alive\n\n"
            continue
        quiet = 0.0
        version = snapshot.version
        regions = render_regions(view, snapshot, operation, csrf)
        changed = {k: v for k, v in regions.items() if sent.get(k) != v}
        if changed:
            sent.update(changed)
            payload = {
                "version": snapshot.version,
                "now": snapshot.now,
                "changed_at": live.changed_at,
                "regions": changed,
            }
            yield sse("regions", payload)
        for seq, notice in live.notices_after(notice_seq):
            notice_seq = seq
            yield sse("notice", {"seq": seq, **notice.to_plain()})


async def events(request: Request) -> Response:
    """GET /events : the live stream of one page."""
    board = dashboard_of(request)
    view = request.query_params.get("view", "overview")
    if view not in VIEWS:
        return PlainTextResponse(f"unknown view {view[:40]!r}; expected one of {', '.join(VIEWS)}", 400)
    try:
        operation = board.actions.check_operation(request.query_params.get("op"))
    except ConfigError as exc:
        return PlainTextResponse(str(exc), 400)
    since = _int(request.query_params.get("since"))
    notices = _int(request.query_params.get("notices"))
    return StreamingResponse(
        _stream(board, view, operation, since, notices),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )


def event_routes() -> list[Route]:
    """The event stream route."""
    return [Route("/events", events, methods=["GET"])]
