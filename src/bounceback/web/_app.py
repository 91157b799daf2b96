"""The dashboard as an ASGI application: routes, static files, the security gate and the live watcher.

>>> import tempfile, pathlib
>>> from bounceback.web import AccessPolicy, create_app
>>> app = create_app(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db", AccessPolicy("t0k", port=8080))
>>> sorted({r.path for r in app.routes} & {"/", "/events", "/api/openapi.json"})
['/', '/api/openapi.json', '/events']
>>> app.state.dashboard.collector.close()
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from bounceback.integrations._notify import NotifyHooks
from bounceback.web._actions import Actions
from bounceback.web._api import api_routes
from bounceback.web._collect import Collector
from bounceback.web._context import Dashboard
from bounceback.web._live import LiveState
from bounceback.web._model import Notice
from bounceback.web._routes_pages import page_routes
from bounceback.web._security import AccessPolicy, SecurityMiddleware
from bounceback.web._stream import event_routes

__all__ = ["STATIC_DIR", "create_app"]

_log = logging.getLogger("bounceback.web")

STATIC_DIR = Path(__file__).with_name("static")
"""The hand-written JavaScript, CSS and icon the pages load."""


def create_app(
    database: str | Path,
    policy: AccessPolicy,
    *,
    poll: float = 0.05,
    refresh: float = 2.0,
    hooks: bool = True,
    stopping: Callable[[], bool] | None = None,
) -> Starlette:
    """The dashboard application for the home database ``database``, guarded by ``policy``.

    ``poll`` is how often the database is checked for writes, ``refresh`` how often the pages are
    re-read anyway; with ``hooks`` the notification hooks (``notify.command``, ``notify.webhook``) run for
    each notice. ``stopping`` tells the event streams that the server is shutting down.
    """
    path = Path(database)
    collector = Collector(path)
    actions = Actions(collector)
    notify = NotifyHooks(collector.settings) if hooks else None

    def on_notice(notice: Notice) -> None:
        if notify is not None:
            notify.send(notice.to_plain())

    live = LiveState(path, collector.collect, poll=poll, refresh=refresh, on_notice=on_notice)
    board = Dashboard(path, policy, collector, actions, live, stopping or (lambda: False))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:  # noqa: ARG001
        actions.start()
        await live.start()
        try:
            yield
        finally:
            await live.stop()
            actions.close()
            collector.close()

    app = Starlette(
        routes=[
            *page_routes(),
            *event_routes(),
            *api_routes(),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=[Middleware(SecurityMiddleware, policy=policy)],
        lifespan=lifespan,
    )
    app.state.dashboard = board
    return app
