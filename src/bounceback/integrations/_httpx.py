"""httpx transports that recover by themselves: ``httpx.Client(transport=RecoveringTransport())``.

Each request runs under a policy: retryable statuses and connection errors are retried with backoff,
``Retry-After`` is honoured in both forms (capped by ``max_retry_after`` and never past the deadline), only
idempotent methods (or requests with an ``Idempotency-Key``) are retried, and every request passes the
circuit breaker of its host (or route). When recovery gives up on a retryable status, the last response is
returned as usual; connection errors are re-raised as httpx raised them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from bounceback.core._classify import (
    DEFAULT_CLASSIFIER,
    Classification,
    Classifier,
    ErrorKind,
    Rule,
    on_predicate,
)
from bounceback.integrations._http import (
    IDEMPOTENT_METHODS,
    HttpRecovery,
    RetryableResponse,
    classify_status,
    redact_url,
    transport_rules,
)

__all__ = [
    "AsyncRecoveringTransport",
    "HTTPX_CLASSIFIER",
    "RecoveringTransport",
]


def _dns_not_found(exc: BaseException) -> bool:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 6:
        if isinstance(current, socket.gaierror) and current.errno not in (socket.EAI_AGAIN,):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _status_error(exc: BaseException) -> Classification | None:
    """``response.raise_for_status()`` errors, by the status of their response."""
    if not isinstance(exc, httpx.HTTPStatusError):
        return None
    response = exc.response
    verdict = classify_status(response.status_code, response.headers)
    if verdict is not None:
        return verdict
    return Classification(
        ErrorKind.PERMANENT, f"HTTP {response.status_code}: an answer, not a fault to wait out"
    )


HTTPX_CLASSIFIER: Classifier = DEFAULT_CLASSIFIER.with_rules(
    Rule("httpx:status", _status_error),
    on_predicate(
        lambda e: isinstance(e, httpx.ConnectError) and _dns_not_found(e),
        kind="permanent",
        reason="the host name does not resolve",
        name="httpx:dns",
    ),
    *transport_rules(
        [
            ((httpx.TimeoutException,), ErrorKind.TRANSIENT, "the request timed out"),
            (
                (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError),
                ErrorKind.TRANSIENT,
                "the connection failed",
            ),
            (
                (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.DecodingError),
                ErrorKind.PERMANENT,
                "the request itself is wrong",
            ),
            ((httpx.InvalidURL,), ErrorKind.PERMANENT, "the URL is invalid"),
        ]
    ),
)
"""The default classifier plus httpx's exception types."""


def _rebuild(response: httpx.Response, content: bytes, request: httpx.Request) -> httpx.Response:
    # A transport-level response has no request attached yet; the client attaches it to what we return.
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        content=content,
        request=request,
        extensions=response.extensions,
    )


def _drain(response: httpx.Response) -> bytes:
    """The body as it came over the wire (still content-encoded: the client decodes it once, later)."""
    try:
        return b"".join(response.iter_raw())
    finally:
        response.close()


async def _adrain(response: httpx.Response) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


class RecoveringTransport(httpx.BaseTransport):
    """A sync httpx transport applying a policy per request.

    Keyword arguments not listed are :class:`bounceback.Policy` arguments (``attempts``, ``deadline``,
    ``backoff``, ``max_retry_after``, ``settings``, ``clock``, ``bus``, ...). ``breakers`` is True (one
    ``CircuitBreaker`` per host), False, or a factory ``name -> breaker``; ``breaker_per`` is ``host`` or
    ``route``; ``methods`` the methods that may be retried. ``read_body`` (default True) reads each answer
    inside its attempt, so a connection cut in the middle of the body is retried too; set it to False
    for streamed downloads (``client.stream``), whose bodies are then read, and may fail, after recovery.

    Give requests their own httpx timeouts: they bound each attempt.

    >>> client = httpx.Client(transport=RecoveringTransport(attempts=3, deadline=10))
    >>> client.close()
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        operation: str = "http",
        breakers: bool | Callable[[str], Any] = True,
        breaker_per: str = "host",
        methods: Iterable[str] = IDEMPOTENT_METHODS,
        classifier: Classifier = HTTPX_CLASSIFIER,
        read_body: bool = True,
        **policy_options: Any,
    ) -> None:
        self.read_body = read_body
        self._inner = transport or httpx.HTTPTransport()
        self.recovery = HttpRecovery(
            operation=operation,
            classifier=classifier,
            breakers=breakers,
            breaker_per=breaker_per,
            methods=methods,
            policy_options=policy_options,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` under its policy."""
        policy = self.recovery.policy(request.method, str(request.url), request.headers)
        request.read()  # a body must be replayable to be retried
        inner = self._inner
        wall = self.recovery.wall

        read_body = self.read_body

        def attempt() -> httpx.Response:
            response = inner.handle_request(request)
            verdict = classify_status(response.status_code, response.headers, now=wall())
            if verdict is None:
                # httpx reads the body after the transport returns, outside the policy: read it here
                # so that a cut in the middle of the answer is an attempt that failed, and is retried.
                return _rebuild(response, _drain(response), request) if read_body else response
            content = _drain(response)
            raise RetryableResponse(
                request.method,
                redact_url(str(request.url)),
                response.status_code,
                _rebuild(response, content, request),
                verdict.retry_after,
            )

        result: httpx.Response = policy.call(attempt)
        return result

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


class AsyncRecoveringTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`RecoveringTransport` (same arguments, ``read_body`` too); attempt
    timeouts are enforced."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        operation: str = "http",
        breakers: bool | Callable[[str], Any] = True,
        breaker_per: str = "host",
        methods: Iterable[str] = IDEMPOTENT_METHODS,
        classifier: Classifier = HTTPX_CLASSIFIER,
        read_body: bool = True,
        **policy_options: Any,
    ) -> None:
        self.read_body = read_body
        self._inner = transport or httpx.AsyncHTTPTransport()
        self.recovery = HttpRecovery(
            operation=operation,
            classifier=classifier,
            breakers=breakers,
            breaker_per=breaker_per,
            methods=methods,
            policy_options=policy_options,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` under its policy."""
        policy = self.recovery.policy(request.method, str(request.url), request.headers)
        await request.aread()
        inner = self._inner
        wall = self.recovery.wall

        read_body = self.read_body

        async def attempt() -> httpx.Response:
            response = await inner.handle_async_request(request)
            verdict = classify_status(response.status_code, response.headers, now=wall())
            if verdict is None:
                return _rebuild(response, await _adrain(response), request) if read_body else response
            content = await _adrain(response)
            raise RetryableResponse(
                request.method,
                redact_url(str(request.url)),
                response.status_code,
                _rebuild(response, content, request),
                verdict.retry_after,
            )

        result: httpx.Response = await policy.acall(attempt)
        return result

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
