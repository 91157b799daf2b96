"""The OpenAPI 3.1 description of the dashboard's JSON API (served at ``/api/openapi.json``).

Written by hand, next to the routes it describes (``_api``), and checked against them by the tests.
"""

from __future__ import annotations

from typing import Any

from bounceback.core.settings._source import SCHEMA

__all__ = ["openapi_schema"]

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "field": {"type": "string"},
                "value": {"type": "string"},
                "allowed": {"type": "string"},
                "hint": {"type": ["string", "null"]},
                "message": {"type": "string"},
            },
            "required": ["message"],
        }
    },
    "required": ["error"],
}
_CHANGE = {"type": ["object", "null"], "description": "The history entry written (null: nothing changed)."}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}


def _post(
    summary: str, properties: dict[str, Any], required: list[str], result: dict[str, Any]
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": properties, "required": required}
                    }
                },
            },
            "responses": {
                "200": {"description": "Done.", "content": {"application/json": {"schema": result}}},
                "401": {"description": "No access token."},
                "403": {"description": "Wrong token, or a cookie request without CSRF token / same origin."},
                "422": {
                    "description": "Refused; nothing changed.",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "503": {
                    "description": "The home database could not be written.",
                    "content": {"application/json": {"schema": _ERROR}},
                },
            },
        }
    }


def _get(
    summary: str, result: dict[str, Any], parameters: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK.", "content": {"application/json": {"schema": result}}},
            "401": {"description": "No access token."},
            "403": {"description": "Wrong access token."},
            "/api/tickets/resolve": _post(
                "Resolve an open ticket with one of its choices, exactly once.",
                {
                    "ticket_id": _NAME,
                    "choice": {"type": "string", "enum": ["retry", "retry-adjusted", "skip", "abort"]},
                    "attempts": {"type": ["integer", "string", "null"], "description": "retry-adjusted only"},
                    "deadline": {
                        "type": ["number", "string", "null"],
                        "description": "retry-adjusted only: seconds or a duration such as 5m",
                    },
                },
                ["ticket_id", "choice"],
                {"type": "object", "properties": {"message": {"type": "string"}}},
            ),
        },
    }
    if parameters:
        op["parameters"] = parameters
        op["responses"]["422"] = {
            "description": "A bad parameter.",
            "content": {"application/json": {"schema": _ERROR}},
        }
    return {"get": op}


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document.

    >>> doc = openapi_schema()
    >>> doc["openapi"], sorted(doc["paths"])[:2]
    ('3.1.0', ['/api/breakers/control', '/api/runs/cancel'])
    """
    operation_param = {
        "name": "op",
        "in": "query",
        "required": False,
        "description": "An operation name; omitted or empty for the global values.",
        "schema": {"type": "string", "maxLength": 200},
    }
    value_schema = {
        "description": "Text as on the command line ('250ms', 'yes', '75,126') or a typed JSON value.",
        "type": ["string", "number", "integer", "boolean", "array", "null"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bounceback dashboard API",
            "version": "1",
            "description": (
                "Read and change what the bounceback dashboard shows. Every request needs the access token "
                "printed at start-up, as 'Authorization: Bearer TOKEN' (scripts) or the session cookie "
                "(the browser). Cookie requests that change something also need the X-CSRF-Token header "
                "and an Origin header of the dashboard itself."
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "bounceback_PORT"},
            }
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": {
            "/api/snapshot": _get(
                "Breakers, recent runs with their attempts, and tickets.",
                {
                    "type": "object",
                    "properties": {
                        "now": {"type": "number"},
                        "version": {"type": "integer"},
                        "breakers": {"type": "array", "items": {"type": "object"}},
                        "runs": {"type": "array", "items": {"type": "object"}},
                        "attempts": {"type": "object"},
                        "tickets": {"type": "array", "items": {"type": "object"}},
                        "problems": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["now", "breakers", "runs", "tickets"],
                },
            ),
            "/api/settings": {
                **_get(
                    "Every setting's value, text and source for the global scope or one operation.",
                    {"type": "object", "properties": {"operation": {}, "values": {"type": "object"}}},
                    [operation_param],
                ),
                **_post(
                    "Set one value (refused values change nothing).",
                    {
                        "key": {"type": "string", "enum": sorted(SCHEMA)},
                        "value": value_schema,
                        "operation": {"type": ["string", "null"], "maxLength": 200},
                    },
                    ["key", "value"],
                    {"type": "object", "properties": {"change": _CHANGE}},
                ),
            },
            "/api/settings/reset": _post(
                "Remove one stored value so the layer below applies.",
                {"key": {"type": "string"}, "operation": {"type": ["string", "null"], "maxLength": 200}},
                ["key"],
                {"type": "object", "properties": {"change": _CHANGE}},
            ),
            "/api/settings/undo": _post(
                "Revert one history entry whose value is still in force.",
                {"id": {"type": "integer", "minimum": 1}},
                ["id"],
                {"type": "object", "properties": {"change": _CHANGE}},
            ),
            "/api/breakers/control": _post(
                "Force a breaker open, force it closed, or reset it.",
                {"name": _NAME, "action": {"type": "string", "enum": ["open", "close", "reset"]}},
                ["name", "action"],
                {"type": "object", "properties": {"message": {"type": "string"}}},
            ),
            "/api/runs/cancel": _post(
                "Ask the process running a recovery to stop its automatic attempts (within a second).",
                {"run_id": _NAME},
                ["run_id"],
                {
                    "type": "object",
                    "properties": {
                        "requested": {"type": "boolean", "description": "False: the run had already ended."}
                    },
                },
            ),
            "/api/tickets/resolve": _post(
                "Resolve an open ticket with one of its choices, exactly once.",
                {
                    "ticket_id": _NAME,
                    "choice": {"type": "string", "enum": ["retry", "retry-adjusted", "skip", "abort"]},
                    "attempts": {"type": ["integer", "string", "null"], "description": "retry-adjusted only"},
                    "deadline": {
                        "type": ["number", "string", "null"],
                        "description": "retry-adjusted only: seconds or a duration such as 5m",
                    },
                },
                ["ticket_id", "choice"],
                {"type": "object", "properties": {"message": {"type": "string"}}},
            ),
        },
    }
