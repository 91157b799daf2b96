"""What grpcio's errors mean: the error pack registered for the ``grpc`` module.

An ``RpcError`` carries a status code, and the code says it all: ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``,
``ABORTED``, ``INTERNAL`` and ``UNKNOWN`` are transient; ``RESOURCE_EXHAUSTED`` is throttled (with the
server's ``grpc-retry-pushback-ms`` as the wait when it sends one); ``INVALID_ARGUMENT``, ``NOT_FOUND``,
``ALREADY_EXISTS``, ``PERMISSION_DENIED``, ``UNAUTHENTICATED``, ``FAILED_PRECONDITION``, ``OUT_OF_RANGE``,
``UNIMPLEMENTED``, ``DATA_LOSS`` and ``CANCELLED`` are permanent. Works for the sync and the asyncio API
(``grpc.aio.AioRpcError``) alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import ErrorPack
from bounceback.core.classify._step import Step

__all__ = ["GRPC_PACK", "grpc_code_name"]

_T, _P, _S = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.THROTTLED
_BY_CODE: Mapping[str, tuple[ErrorKind, str]] = {
    "UNAVAILABLE": (_T, "the server is unavailable"),
    "DEADLINE_EXCEEDED": (_T, "the call ran past its deadline"),
    "ABORTED": (_T, "the call was aborted by a conflict; it may be run again"),
    "INTERNAL": (_T, "the server failed inside"),
    "UNKNOWN": (_T, "the server failed with an unknown error"),
    "RESOURCE_EXHAUSTED": (_S, "the server is out of quota or capacity"),
    "INVALID_ARGUMENT": (_P, "the request is invalid"),
    "OUT_OF_RANGE": (_P, "the request asks for something out of range"),
    "NOT_FOUND": (_P, "what the call names does not exist"),
    "ALREADY_EXISTS": (_P, "what the call creates already exists"),
    "PERMISSION_DENIED": (_P, "the caller is not allowed to do this"),
    "UNAUTHENTICATED": (_P, "the caller's credentials are missing or wrong"),
    "FAILED_PRECONDITION": (_P, "the system is not in a state to do this"),
    "UNIMPLEMENTED": (_P, "the server does not implement this method"),
    "DATA_LOSS": (_P, "unrecoverable data loss"),
    "CANCELLED": (_P, "the call was cancelled"),
}
_VERDICTS = {
    name: Classification(kind, f"gRPC {name}: {reason}") for name, (kind, reason) in _BY_CODE.items()
}
_TOPICS = {
    "UNAVAILABLE": "grpc-unavailable",
    "DEADLINE_EXCEEDED": "grpc-deadline",
    "RESOURCE_EXHAUSTED": "grpc-throttled",
    "INVALID_ARGUMENT": "grpc-invalid-argument",
    "OUT_OF_RANGE": "grpc-invalid-argument",
    "NOT_FOUND": "grpc-not-found",
    "PERMISSION_DENIED": "grpc-permission",
    "UNAUTHENTICATED": "grpc-permission",
    "FAILED_PRECONDITION": "grpc-precondition",
    "UNIMPLEMENTED": "grpc-unimplemented",
}
_PEER = re.compile(r"ipv[46]:(\[[0-9A-Fa-f:]+\]|[0-9.]+):(\d{1,5})")
_NAME = re.compile(r"dns:(?:///)?([A-Za-z0-9.-]+):(\d{1,5})")


def _call(exc: BaseException, name: str) -> Any:
    method = getattr(exc, name, None)
    if not callable(method):
        return None
    try:
        return method()
    except Exception:
        return None


def grpc_code_name(exc: BaseException) -> str | None:
    """The status code of a gRPC error, as its name (``"UNAVAILABLE"``), or None."""
    code = _call(exc, "code")
    name = getattr(code, "name", None)
    return name if isinstance(name, str) else None


def _pushback(exc: BaseException) -> float | None:
    metadata = _call(exc, "trailing_metadata") or ()
    try:
        for key, value in metadata:
            if key == "grpc-retry-pushback-ms":
                millis = int(value)
                return millis / 1000 if millis >= 0 else None
    except (TypeError, ValueError):
        return None
    return None


def _classify(exc: BaseException) -> Classification | None:
    name = grpc_code_name(exc)
    if name is None or name not in _BY_CODE:
        return None
    kind, reason = _BY_CODE[name]
    if kind is _S:
        return Classification(kind, f"gRPC {name}: {reason}", _pushback(exc))
    return _VERDICTS[name]


def _facts(exc: BaseException) -> Mapping[str, object]:
    facts: dict[str, object] = {}
    name = grpc_code_name(exc)
    if name is not None:
        facts["grpc_code"] = name
    details = _call(exc, "details")
    if isinstance(details, str) and details:
        facts["grpc_details"] = details
    method = getattr(exc, "bounceback_rpc", None)
    if isinstance(method, str):
        facts["rpc_method"] = method
    target = getattr(exc, "bounceback_target", None)
    if isinstance(target, str) and target:
        facts["target"] = target
        host, _, port = target.rpartition(":")
        if host and port.isdigit():
            facts["host"], facts["port"] = host.removeprefix("dns:///").removeprefix("ipv4:"), port
            return facts
    text = " ".join(str(part) for part in (details, _call(exc, "debug_error_string")) if part)
    match = _PEER.search(text) or _NAME.search(text)
    if match is not None:
        facts["host"], facts["port"] = match.group(1), match.group(2)
    return facts


def _topic(exc: BaseException, _known: Mapping[str, str]) -> str | None:
    return _TOPICS.get(grpc_code_name(exc) or "")


_METHOD = "{rpc_method}"
GRPC_PACK = ErrorPack(
    "grpc",
    _classify,
    facts=_facts,
    topic=_topic,
    steps={
        "grpc-unavailable": (
            Step(
                "grpc-server-up",
                "Check that the gRPC server at {address} is running and listening (it said: {grpc_details}).",
                "Check that the gRPC server at {address} is running and listening.",
                "Check that the gRPC server is running and listening (it said: {grpc_details}).",
            ),
            Step(
                "grpc-target",
                "Check the channel's target: {operation} connects to {address}; is that the server's port?",
                "Check the channel's target address and port.",
            ),
            Step(
                "grpc-proxy",
                "If a proxy or load balancer sits in front (envoy, nginx), check that it has healthy back ends.",
            ),
        ),
        "grpc-deadline": (
            Step(
                "grpc-deadline-slow",
                f"The call {_METHOD} ran past its deadline: check the server's load and its own "
                "dependencies (database, downstream calls).",
                "The call ran past its deadline: check the server's load and its own dependencies.",
            ),
            Step(
                "grpc-deadline-budget",
                "If the work legitimately takes longer, raise the call's timeout for {operation}.",
            ),
        ),
        "grpc-throttled": (
            Step(
                "grpc-quota",
                "The server is out of quota or capacity (RESOURCE_EXHAUSTED: {grpc_details}); wait, or "
                "lower the call rate of {operation}.",
                "The server is out of quota or capacity (RESOURCE_EXHAUSTED); wait, or lower the call rate.",
            ),
            Step(
                "grpc-message-size", "If the details mention message size, raise max_receive_message_length."
            ),
        ),
        "grpc-invalid-argument": (
            Step(
                "grpc-fix-request",
                f"The server rejected the request to {_METHOD}: {{grpc_details}}. Fix the request's fields; "
                "retrying the same request cannot help.",
                "The server rejected the request: {grpc_details}. Fix the request's fields; retrying the "
                "same request cannot help.",
                "The server rejected the request as invalid. Fix the request's fields.",
            ),
            Step(
                "grpc-proto-version",
                "Check that client and server were built from the same .proto version.",
            ),
        ),
        "grpc-not-found": (
            Step(
                "grpc-missing",
                "What the call names does not exist on the server: {grpc_details}. Check the id or name "
                "{operation} asked for.",
                "What the call names does not exist on the server. Check the id or name it asked for.",
            ),
        ),
        "grpc-permission": (
            Step(
                "grpc-credentials",
                "The server refused the caller ({grpc_code}: {grpc_details}): check the token, client "
                "certificate or API key {operation} sends, and its roles on the server.",
                "The server refused the caller ({grpc_code}): check the token, client certificate or API "
                "key, and its roles on the server.",
            ),
            Step(
                "clock",
                "Check that this machine's clock is right: a wrong date breaks time-limited credentials.",
            ),
        ),
        "grpc-precondition": (
            Step(
                "grpc-state",
                "The server is not in a state to do this ({grpc_details}): finish or undo what must come "
                "first, then retry by hand.",
                "The server is not in a state to do this: finish or undo what must come first.",
            ),
        ),
        "grpc-unimplemented": (
            Step(
                "grpc-method-exists",
                f"The server does not offer {_METHOD}: check the server's version and the service name.",
                "The server does not offer this method: check the server's version and the service name.",
            ),
        ),
    },
)
"""The grpcio error pack."""
