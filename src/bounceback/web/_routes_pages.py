"""The HTML pages and the forms they post.

Every form answers with a redirect back to its page (POST/redirect/GET, so a reload never re-sends it)
carrying a short ``done`` code that selects a fixed message; a refused form re-renders the page with the
reason instead (status 422 or 409), and the settings form shows each refusal next to its field.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bounceback.core.settings._source import SCHEMA
from bounceback.errors import ConfigError, StoreError
from bounceback.web._context import dashboard_of, read_form
from bounceback.web._settings_edit import apply_form, message_of
from bounceback.web.views._pages import render_full
from bounceback.web.views._plot import backoff_plot
from bounceback.web.views._settings import layers_of
from bounceback.web.views._text import esc

__all__ = ["FLASH", "page_routes"]

FLASH = {
    "saved": "Settings saved. Running programs pick them up within a second.",
    "unchanged": "Nothing to save: no value was changed.",
    "reset": "Value removed; the layer below applies again.",
    "undone": "Change undone.",
    "cancel": "Cancel requested: the run stops its automatic attempts within a second.",
    "ended": "That run had already ended; nothing to cancel.",
    "breaker": "Breaker updated.",
    "resolved": "Ticket resolved; the program that parked it carries on.",
    "marked": "Step marked not useful; it ranks lower next time.",
}
"""The messages a redirect may ask for (``?done=saved``); fixed texts, so a link cannot inject one."""


def _flash(request: Request) -> str:
    done = request.query_params.get("done", "")
    key = request.query_params.get("key", "")
    if done == "reset" and key in SCHEMA:  # a known key only: a link cannot put its own words here
        below = "global value" if request.query_params.get("op") else "default"
        return f"{key} reset: the {below} applies again."
    return FLASH.get(done, "")


def _operation(request: Request, raw: Any) -> str | None:
    return dashboard_of(request).actions.check_operation(raw)


async def _page(request: Request, view: str, **kwargs: Any) -> Response:
    board = dashboard_of(request)
    status = int(kwargs.pop("status", 200))
    try:
        operation = _operation(request, kwargs.pop("operation", request.query_params.get("op")))
    except ConfigError as exc:
        operation, status = None, 400
        kwargs.update(flash=message_of(exc), flash_error=True)
    flash = kwargs.pop("flash", None) or _flash(request)
    snapshot = await board.fresh()
    html = render_full(
        view,
        snapshot,
        operation,
        board.policy.csrf,
        database=str(board.database),
        flash=flash,
        **kwargs,
    )
    # The event stream continues from this snapshot and this notice.
    html = html.replace(
        "<body ",
        f'<body data-version="{snapshot.version}" data-notice-seq="{board.live.notice_seq}" ',
        1,
    )
    return HTMLResponse(html, status_code=status)


def _back(path: str, done: str, **query: str | None) -> RedirectResponse:
    params = {k: v for k, v in query.items() if v}
    params["done"] = done
    return RedirectResponse(f"{path}?{urlencode(params)}", status_code=303)


async def overview(request: Request) -> Response:
    """GET / : the overview."""
    return await _page(request, "overview")


async def recoveries(request: Request) -> Response:
    """GET /recoveries : active recoveries."""
    return await _page(request, "recoveries")


async def timeline(request: Request) -> Response:
    """GET /timeline?op= : the timeline."""
    return await _page(request, "timeline")


async def settings_page(request: Request) -> Response:
    """GET /settings?op= : the settings form."""
    return await _page(request, "settings")


async def tickets(request: Request) -> Response:
    """GET /tickets : the ticket queue."""
    return await _page(request, "tickets")


async def _refused(request: Request, view: str, exc: Exception, status: int = 422, **kwargs: Any) -> Response:
    text = message_of(exc) if isinstance(exc, ConfigError) else str(exc)
    if isinstance(exc, ConfigError):
        text = f"{exc.field}: {text}"
    return await _page(request, view, flash=f"Refused: {text}", flash_error=True, status=status, **kwargs)


async def settings_save(request: Request) -> Response:
    """POST /settings : store the changed fields, all or none."""
    board = dashboard_of(request)
    try:
        form = await read_form(request)
        operation = _operation(request, form.get("op"))
        result = await asyncio.to_thread(apply_form, board.collector.settings, operation, form)
    except (ConfigError, StoreError) as exc:
        return await _refused(request, "settings", exc, status=400 if isinstance(exc, ConfigError) else 503)
    if not result.ok:
        return await _page(
            request,
            "settings",
            operation=operation,
            status=422,
            extra={"errors": dict(result.errors), "submitted": dict(result.submitted)},
        )
    return _back("/settings", "saved" if result.changes else "unchanged", op=operation)


async def settings_reset(request: Request) -> Response:
    """POST /settings/reset : remove one stored value."""
    board = dashboard_of(request)
    operation = None
    try:
        form = await read_form(request)
        operation = _operation(request, form.get("op"))
        key = form.get("reset", "")
        if key == "notify.command":
            raise ConfigError(
                key, "reset", "a key the dashboard may change (use `bounceback settings reset`)"
            )
        await asyncio.to_thread(board.collector.settings.reset, key, operation)
    except (ConfigError, StoreError) as exc:
        return await _refused(request, "settings", exc, operation=operation)
    return _back("/settings", "reset", op=operation, key=key)


async def settings_undo(request: Request) -> Response:
    """POST /settings/undo : revert one history entry."""
    board = dashboard_of(request)
    operation = None
    try:
        form = await read_form(request)
        operation = _operation(request, form.get("op"))
        raw = form.get("id", "")
        if not raw.isdigit() or len(raw) > 18:
            raise ConfigError("id", raw, "the number of a change in the history")
        undone = int(raw)
        settings = board.collector.settings
        guarded = await asyncio.to_thread(settings.history, limit=None, key="notify.command")
        if any(c.id == undone for c in guarded):
            raise ConfigError(
                "id", undone, "a change the dashboard may undo (use `bounceback settings undo`)"
            )
        await asyncio.to_thread(settings.undo, undone)
    except (ConfigError, StoreError) as exc:
        return await _refused(request, "settings", exc, status=409, operation=operation)
    return _back("/settings", "undone", op=operation)


async def breaker_control(request: Request) -> Response:
    """POST /breakers/control : force open, force close or reset a breaker."""
    board = dashboard_of(request)
    try:
        form = await read_form(request)
        await asyncio.to_thread(board.actions.breaker, form.get("name"), form.get("action"))
    except (ConfigError, StoreError) as exc:
        return await _refused(request, "overview", exc)
    return _back("/", "breaker")


async def run_cancel(request: Request) -> Response:
    """POST /runs/cancel : ask the owning process to stop a run's automatic attempts."""
    board = dashboard_of(request)
    try:
        form = await read_form(request)
        pending = await asyncio.to_thread(board.actions.cancel, form.get("run_id"))
    except (ConfigError, StoreError) as exc:
        return await _refused(request, "recoveries", exc)
    return _back("/recoveries", "cancel" if pending else "ended")


async def ticket_resolve(request: Request) -> Response:
    """POST /tickets/resolve : resolve a ticket with one of its choices."""
    board = dashboard_of(request)
    try:
        form = await read_form(request)
        await asyncio.to_thread(
            board.actions.resolve,
            form.get("ticket_id"),
            form.get("choice"),
            form.get("attempts"),
            form.get("deadline"),
        )
    except (ConfigError, StoreError) as exc:
        return await _refused(request, "tickets", exc, status=409)
    return _back("/tickets", "resolved")


async def ticket_not_useful(request: Request) -> Response:
    """POST /tickets/not-useful : mark a guidance step as not useful."""
    board = dashboard_of(request)
    try:
        form = await read_form(request)
        await asyncio.to_thread(board.actions.not_useful, form.get("ticket_id"), form.get("step"))
    except (ConfigError, StoreError) as exc:
        return await _refused(request, "tickets", exc)
    return _back("/tickets", "marked")


PREVIEW_KEYS = (
    "retry.max_attempts",
    "retry.initial_delay",
    "retry.max_delay",
    "retry.multiplier",
    "retry.backoff",
    "retry.jitter",
    "retry.deadline",
)
"""The settings the backoff plot depends on (the form previews them as a person types)."""


async def settings_plot(request: Request) -> Response:
    """GET /settings/plot?op=&retry.max_attempts=... : the backoff plot for values being typed (read-only)."""
    board = dashboard_of(request)
    try:
        operation = _operation(request, request.query_params.get("op"))
    except ConfigError as exc:
        return HTMLResponse(f'<p class="field-error">{esc(message_of(exc))}</p>', status_code=400)
    snapshot = await board.fresh()
    values = dict(layers_of(snapshot).effective(operation))
    for key in PREVIEW_KEYS:
        text = request.query_params.get(key)
        if text is None:
            continue
        try:
            values[key] = SCHEMA[key].parse(text, key)
        except ConfigError as exc:
            return HTMLResponse(f'<p class="field-error">{esc(key)}: {esc(message_of(exc))}</p>')
    return HTMLResponse(backoff_plot(values))


def page_routes() -> list[Route]:
    """The routes of the pages and their forms."""
    return [
        Route("/", overview, methods=["GET", "HEAD"]),
        Route("/recoveries", recoveries, methods=["GET", "HEAD"]),
        Route("/timeline", timeline, methods=["GET", "HEAD"]),
        Route("/settings", settings_page, methods=["GET", "HEAD"]),
        Route("/settings", settings_save, methods=["POST"]),
        Route("/settings/plot", settings_plot, methods=["GET"]),
        Route("/settings/reset", settings_reset, methods=["POST"]),
        Route("/settings/undo", settings_undo, methods=["POST"]),
        Route("/tickets", tickets, methods=["GET", "HEAD"]),
        Route("/breakers/control", breaker_control, methods=["POST"]),
        Route("/runs/cancel", run_cancel, methods=["POST"]),
        Route("/tickets/resolve", ticket_resolve, methods=["POST"]),
        Route("/tickets/not-useful", ticket_not_useful, methods=["POST"]),
    ]
