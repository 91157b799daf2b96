"""What aiohttp's client errors mean: the error pack registered for the ``aiohttp`` module.

Connection failures, disconnects, timeouts and bodies cut short are transient (a name that does not resolve
is permanent); ``raise_for_status()`` errors are classified by their status like the httpx transport's
answers (408, 425, 500, 502, 504 transient; 429 and 503 throttled, with ``Retry-After`` honoured; any
other status is an answer, permanent); TLS, URL and redirect errors are permanent. Guidance uses the
built-in topics (connection refused, DNS, TLS, HTTP status), with the host, port and URL filled in.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import ErrorPack
from bounceback.core.classify._retry_after import parse_retry_after
from bounceback.integrations._pack_support import type_names

__all__ = ["AIOHTTP_PACK"]

_T, _P = ErrorKind.TRANSIENT, ErrorKind.PERMANENT


def _names(exc: BaseException) -> frozenset[str]:
    return type_names(exc)


def _classify(exc: BaseException) -> Classification | None:
    from bounceback.integrations._http import classify_status

    names = _names(exc)
    if names & {"ClientSSLError", "ClientConnectorCertificateError", "ServerFingerprintMismatch"}:
        return Classification(_P, "the TLS handshake failed")
    if names & {"InvalidURL", "TooManyRedirects", "ContentTypeError"}:
        return Classification(_P, f"aiohttp {type(exc).__name__}: the request itself is wrong")
    if "ClientResponseError" in names:
        status = getattr(exc, "status", 0)
        headers = getattr(exc, "headers", None) or {}
        verdict = classify_status(status, headers) if isinstance(status, int) else None
        if verdict is not None:
            return verdict
        return Classification(_P, f"HTTP {status}: an answer, not a fault to wait out")
    if "ClientConnectorDNSError" in names or isinstance(getattr(exc, "os_error", None), socket.gaierror):
        error = getattr(exc, "os_error", None)
        if isinstance(error, socket.gaierror) and error.errno == socket.EAI_AGAIN:
            return Classification(_T, "temporary failure in name resolution")
        return Classification(_P, "the host name does not resolve")
    if names & {"ServerTimeoutError", "ConnectionTimeoutError", "SocketTimeoutError"}:
        return Classification(_T, "the request timed out")
    if names & {"ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError"}:
        return Classification(_T, f"aiohttp {type(exc).__name__}: the connection failed")
    return None


def _facts(exc: BaseException) -> Mapping[str, object]:
    info = getattr(exc, "request_info", None)
    url = getattr(info, "real_url", None) or getattr(info, "url", None)
    if url is None:
        return {}
    parts = urlsplit(str(url))
    facts: dict[str, object] = {"url": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"}
    if parts.hostname:
        facts["host"] = parts.hostname
        facts["port"] = parts.port or (443 if parts.scheme == "https" else 80)
    method = getattr(info, "method", None)
    if isinstance(method, str):
        facts["method"] = method
    headers = getattr(exc, "headers", None)
    retry_after = headers.get("Retry-After") if headers is not None else None
    if isinstance(retry_after, str) and parse_retry_after(retry_after) is not None:
        facts["retry_after_header"] = retry_after
    return facts


def _topic(exc: BaseException, _known: Mapping[str, str]) -> str | None:
    # aiohttp's connector errors read "Cannot connect to host h:p ssl:default [...]": the words "ssl:default"
    # would make the text look like a TLS fault, so the topic comes from the OS error underneath.
    error = getattr(exc, "os_error", None)
    if not isinstance(error, OSError) or "ClientConnectorError" not in _names(exc):
        return None
    if "ClientConnectorCertificateError" in _names(exc) or "ClientSSLError" in _names(exc):
        return "tls"
    if isinstance(error, socket.gaierror):
        return "dns"
    if isinstance(error, ConnectionRefusedError):
        return "connection-refused"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "network"


AIOHTTP_PACK = ErrorPack("aiohttp", _classify, facts=_facts, topic=_topic)
"""The aiohttp error pack (classification, facts, topics; the steps are the built-in HTTP ones)."""
