"""Integrations with other libraries, each imported only when first used (they are optional extras).

>>> from bounceback.integrations import RecoveringTransport   # needs the ``http`` extra (httpx)
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it; the module is imported on first access, so a missing extra only
# matters to the program that uses it.
_LAZY = {
    "HookResult": "bounceback.integrations._notify",
    "NotifyHooks": "bounceback.integrations._notify",
    "event_payload": "bounceback.integrations._notify",
    "CommandFailed": "bounceback.integrations._subprocess",
    "CommandResult": "bounceback.integrations._subprocess",
    "CommandRun": "bounceback.integrations._subprocess",
    "CommandRunner": "bounceback.integrations._subprocess",
    "ExitCodes": "bounceback.integrations._subprocess",
    "TIMEOUT_EXIT_CODE": "bounceback.integrations._subprocess",
    "exit_code_of": "bounceback.integrations._subprocess",
    "run_command": "bounceback.integrations._subprocess",
    "AsyncRecoveringTransport": "bounceback.integrations._httpx",
    "HTTPX_CLASSIFIER": "bounceback.integrations._httpx",
    "RecoveringTransport": "bounceback.integrations._httpx",
    "RecoveringMiddleware": "bounceback.integrations._aiohttp",
    "RecoveringInterceptor": "bounceback.integrations._grpc",
    "AsyncRecoveringInterceptor": "bounceback.integrations._grpc",
    "REQUESTS_CLASSIFIER": "bounceback.integrations._requests",
    "RecoveringAdapter": "bounceback.integrations._requests",
    "RetryableResponse": "bounceback.integrations._http",
    "classify_status": "bounceback.integrations._http",
    "redact_url": "bounceback.integrations._http",
    "ModbusResponseError": "bounceback.integrations._modbus",
    "is_modbus_error": "bounceback.integrations._modbus",
    "raise_for_modbus": "bounceback.integrations._modbus",
    "opcua_node": "bounceback.integrations._opcua",
    "OpenTelemetryExporter": "bounceback.integrations._otel",
    "export_otel": "bounceback.integrations._otel",
    "PrometheusExporter": "bounceback.integrations._prometheus",
    "export_prometheus": "bounceback.integrations._prometheus",
}

__all__ = [
    "AsyncRecoveringInterceptor",
    "AsyncRecoveringTransport",
    "CommandFailed",
    "CommandResult",
    "CommandRun",
    "CommandRunner",
    "ExitCodes",
    "HTTPX_CLASSIFIER",
    "HookResult",
    "ModbusResponseError",
    "NotifyHooks",
    "OpenTelemetryExporter",
    "PrometheusExporter",
    "REQUESTS_CLASSIFIER",
    "RecoveringAdapter",
    "RecoveringInterceptor",
    "RecoveringMiddleware",
    "RecoveringTransport",
    "RetryableResponse",
    "TIMEOUT_EXIT_CODE",
    "classify_status",
    "event_payload",
    "exit_code_of",
    "export_otel",
    "export_prometheus",
    "is_modbus_error",
    "opcua_node",
    "raise_for_modbus",
    "redact_url",
    "run_command",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bounceback.integrations' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
