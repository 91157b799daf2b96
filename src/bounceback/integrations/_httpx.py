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

from bounceback.core.classify._rules import (
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


def _answer(
    request: httpx.Request, response: httpx.Response, verdict: Any, content: bytes | None
) -> httpx.Response:
    """The response an attempt hands back, or RetryableResponse raised for a status that asks for more.

    ``content`` is the body read inside the attempt (None when it is left to the client to read).
    """
    if verdict is None:
        return response if content is None else _rebuild(response, content, request)
    raise RetryableResponse(
        request.method,
        redact_url(str(request.url)),
        response.status_code,
        _rebuild(response, content or b"", request),
        verdict.retry_after,
    )


class _Recovering:
    """What both transports share: their options and the policy for each request."""

    def _setup(
        self,
        operation: str,
        breakers: bool | Callable[[str], Any],
        breaker_per: str,
        methods: Iterable[str],
        classifier: Classifier,
        read_body: bool,
        policy_options: dict[str, Any],
    ) -> None:
        self.read_body = read_body
        self.recovery = HttpRecovery(
            operation=operation,
            classifier=classifier,
            breakers=breakers,
            breaker_per=breaker_per,
            methods=methods,
            policy_options=policy_options,
        )


class RecoveringTransport(_Recovering, httpx.BaseTransport):
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
        self._inner = transport or httpx.HTTPTransport()
        self._setup(operation, breakers, breaker_per, methods, classifier, read_body, policy_options)

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
            # httpx reads the body after the transport returns, outside the policy: read it here so that
            # a cut in the middle of the answer is an attempt that failed, and is retried.
            content = _drain(response) if read_body or verdict is not None else None
            return _answer(request, response, verdict, content)

        result: httpx.Response = policy.call(attempt)
        return result

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


class AsyncRecoveringTransport(_Recovering, httpx.AsyncBaseTransport):
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
        self._inner = transport or httpx.AsyncHTTPTransport()
        self._setup(operation, breakers, breaker_per, methods, classifier, read_body, policy_options)

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
            content = await _adrain(response) if read_body or verdict is not None else None
            return _answer(request, response, verdict, content)

        result: httpx.Response = await policy.acall(attempt)
        return result

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
