"""The state one dashboard server shares between its routes, and small request helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.requests import Request

from bounceback.errors import ConfigError
from bounceback.web._actions import Actions
from bounceback.web._collect import Collector
from bounceback.web._live import LiveState
from bounceback.web._model import Snapshot
from bounceback.web._security import AccessPolicy

__all__ = ["Dashboard", "dashboard_of", "read_form"]


@dataclass
class Dashboard:
    """Everything the routes of one server use."""

    database: Path
    policy: AccessPolicy
    collector: Collector
    actions: Actions
    live: LiveState
    stopping: Callable[[], bool] = field(default=lambda: False)
    """True once the server is shutting down (event streams then end)."""

    async def fresh(self) -> Snapshot:
        """A snapshot read now (page loads want what was just written, not the last poll's)."""
        return await asyncio.to_thread(self.collector.collect)


def dashboard_of(request: Request) -> Dashboard:
    """The :class:`Dashboard` of the app serving ``request``."""
    board: Dashboard = request.app.state.dashboard
    return board


async def read_form(request: Request) -> Mapping[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (the last value of a repeated name).

    Bodies are parsed here rather than by Starlette, which would need the python-multipart package for
    a format the dashboard never uses.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ConfigError(
            "content-type", kind or "(none)", "application/x-www-form-urlencoded (an HTML form)"
        )
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("body", body[:40], "UTF-8 form data") from None
    try:
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=500))
    except ValueError:
        raise ConfigError("body", f"{len(body)} bytes", "a form of at most 500 fields") from None
