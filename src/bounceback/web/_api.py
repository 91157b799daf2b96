"""The JSON API under ``/api`` (described by ``/api/openapi.json``).

Reads: ``GET /api/snapshot`` (breakers, runs, attempts, tickets), ``GET /api/settings?op=`` (every key with
value, text and source). Changes (POST, JSON bodies): ``/api/settings`` ``{"key", "value", "operation"}``,
``/api/settings/reset`` ``{"key", "operation"}``, ``/api/settings/undo`` ``{"id"}``,
``/api/breakers/control`` ``{"name", "action"}``, ``/api/runs/cancel`` ``{"run_id"}``,
``/api/tickets/resolve`` ``{"ticket_id", "choice"}``.

Refusals answer ``422`` with ``{"error": {"field", "value", "allowed", "hint", "message"}}`` and change
nothing; a store failure answers ``503``. Untrusted text (error messages) is cleaned and redacted as on
the pages (control characters replaced, credentials masked, at most 2000 characters), but not
HTML-escaped: escaping is the job of whoever renders it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bounceback.core.settings._source import SCHEMA
from bounceback.errors import ConfigError, StoreError
from bounceback.web._context import dashboard_of
from bounceback.web._model import Snapshot
from bounceback.web._openapi import openapi_schema
from bounceback.web.views._settings import READ_ONLY_KEYS, layers_of
from bounceback.web.views._text import clean

__all__ = ["api_routes", "snapshot_to_plain"]

_UNTRUSTED = frozenset({"last_error", "error", "reason", "summary", "guidance"})
_API_TEXT = 2000


def _plain(value: Any, key: str = "") -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, str) and key in _UNTRUSTED:
        return clean(value, _API_TEXT)
    return value


def snapshot_to_plain(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data (settings and history are served by ``/api/settings``).

    >>> snapshot_to_plain(Snapshot(now=1.0))["breakers"]
    []
    """
    return {
        "now": snapshot.now,
        "version": snapshot.version,
        "breakers": [{**_plain(b), "failure_rate": b.failure_rate} for b in snapshot.breakers],
        "runs": _plain(snapshot.runs),
        "attempts": _plain(dict(snapshot.attempts)),
        "tickets": _plain(snapshot.tickets),
        "problems": list(snapshot.problems),
    }


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, ConfigError):
        detail = {
            "field": exc.field,
            "value": clean(repr(exc.value), 200),
            "allowed": exc.allowed,
            "hint": exc.hint,
            "message": clean(str(exc), _API_TEXT),
        }
        return JSONResponse({"error": detail}, status_code=422)
    return JSONResponse({"error": {"message": clean(str(exc), _API_TEXT)}}, status_code=503)


async def _body(request: Request) -> dict[str, Any]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ConfigError("content-type", kind or "(none)", "application/json")
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("body", "(not JSON)", "a JSON object") from None
    if not isinstance(data, dict):
        raise ConfigError("body", type(data).__name__, "a JSON object")
    return data


def _text(data: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(name, value, "a non-empty string")
    return value


async def _act(request: Request, work: Callable[[dict[str, Any]], Any]) -> Response:
    try:
        data = await _body(request)
        result = await asyncio.to_thread(work, data)
    except (ConfigError, StoreError) as exc:
        return _error(exc)
    return JSONResponse(result)


async def get_snapshot(request: Request) -> Response:
    """GET /api/snapshot"""
    snapshot = await dashboard_of(request).fresh()
    return JSONResponse(snapshot_to_plain(snapshot))


async def get_settings(request: Request) -> Response:
    """GET /api/settings?op="""
    board = dashboard_of(request)
    try:
        operation = board.actions.check_operation(request.query_params.get("op"))
    except ConfigError as exc:
        return _error(exc)
    snapshot = await board.fresh()
    resolved = layers_of(snapshot).resolve(operation)
    values = {
        key: {"value": SCHEMA[key].to_plain(r.value), "text": r.text, "source": r.source}
        for key, r in resolved.items()
        if operation is None or SCHEMA[key].per_operation
    }
    return JSONResponse({"operation": operation, "values": values})


def _settings_actions(request: Request) -> dict[str, Callable[[dict[str, Any]], Any]]:
    board = dashboard_of(request)
    settings = board.collector.settings

    def guarded(key: str | None) -> str:
        if key in READ_ONLY_KEYS:
            raise ConfigError("key", key, "a key the dashboard may change (use `bounceback settings`)")
        return str(key)

    def put(data: dict[str, Any]) -> Any:
        op = board.actions.check_operation(data.get("operation"))
        if "value" not in data:
            raise ConfigError("value", None, "the new value (text or JSON)")
        change = settings.set(guarded(_text(data, "key")), data["value"], op)
        return {"change": change.to_plain() if change else None}

    def reset(data: dict[str, Any]) -> Any:
        op = board.actions.check_operation(data.get("operation"))
        change = settings.reset(guarded(_text(data, "key")), op)
        return {"change": change.to_plain() if change else None}

    def undo(data: dict[str, Any]) -> Any:
        ident = data.get("id")
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 < ident < 2**62:
            raise ConfigError("id", ident, "the number of a change in the history")
        if any(c.id == ident for c in settings.history(limit=None, key="notify.command")):
            raise ConfigError("id", ident, "a change the dashboard may undo (use `bounceback settings undo`)")
        return {"change": settings.undo(ident).to_plain()}

    return {"put": put, "reset": reset, "undo": undo}


async def post_setting(request: Request) -> Response:
    """POST /api/settings"""
    return await _act(request, _settings_actions(request)["put"])


async def reset_setting(request: Request) -> Response:
    """POST /api/settings/reset"""
    return await _act(request, _settings_actions(request)["reset"])


async def undo_setting(request: Request) -> Response:
    """POST /api/settings/undo"""
    return await _act(request, _settings_actions(request)["undo"])


async def control_breaker(request: Request) -> Response:
    """POST /api/breakers/control"""
    actions = dashboard_of(request).actions
    return await _act(request, lambda d: {"message": actions.breaker(d.get("name"), d.get("action"))})


async def cancel_run(request: Request) -> Response:
    """POST /api/runs/cancel"""
    actions = dashboard_of(request).actions
    return await _act(request, lambda d: {"requested": actions.cancel(d.get("run_id"))})


async def resolve_ticket(request: Request) -> Response:
    """POST /api/tickets/resolve"""
    actions = dashboard_of(request).actions

    def work(d: dict[str, Any]) -> Any:
        message = actions.resolve(d.get("ticket_id"), d.get("choice"), d.get("attempts"), d.get("deadline"))
        return {"message": message}

    return await _act(request, work)


async def get_openapi(request: Request) -> Response:  # noqa: ARG001
    """GET /api/openapi.json"""
    return JSONResponse(openapi_schema())


def api_routes() -> list[Route]:
    """The JSON API routes."""
    return [
        Route("/api/openapi.json", get_openapi, methods=["GET"]),
        Route("/api/snapshot", get_snapshot, methods=["GET"]),
        Route("/api/settings", get_settings, methods=["GET"]),
        Route("/api/settings", post_setting, methods=["POST"]),
        Route("/api/settings/reset", reset_setting, methods=["POST"]),
        Route("/api/settings/undo", undo_setting, methods=["POST"]),
        Route("/api/breakers/control", control_breaker, methods=["POST"]),
        Route("/api/runs/cancel", cancel_run, methods=["POST"]),
        Route("/api/tickets/resolve", resolve_ticket, methods=["POST"]),
    ]
