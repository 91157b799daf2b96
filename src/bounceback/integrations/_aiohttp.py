"""aiohttp sessions that recover by themselves: ``aiohttp.ClientSession(middlewares=(RecoveringMiddleware(),))``.

The same policy semantics as the httpx transport (:class:`bounceback.integrations.RecoveringTransport`):
each request runs under a policy; connection errors, disconnects, timeouts and retryable statuses (408,
425, 429, 500, 502, 503, 504) are retried with backoff; ``Retry-After`` is honoured in both forms (capped
by ``max_retry_after``, never past the deadline); only idempotent methods (or requests carrying an
``Idempotency-Key``) are retried; every request passes the circuit breaker of its host (or route). When
recovery gives up on a retryable status, the last response is returned as usual (its body already read);
connection errors are re-raised as aiohttp raised them, classified by the aiohttp error pack.

Give the session a timeout per attempt (``sock_connect``, ``sock_read``) rather than a ``total`` shorter
than the policy's deadline: aiohttp's ``total`` covers every attempt of a request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from bounceback.core.classify._rules import DEFAULT_CLASSIFIER, Classifier
from bounceback.integrations._http import (
    IDEMPOTENT_METHODS,
    HttpRecovery,
    RetryableResponse,
    classify_status,
    redact_url,
)

__all__ = ["RecoveringMiddleware"]


class RecoveringMiddleware:
    """An aiohttp client middleware applying a policy per request.

    Keyword arguments not listed are :class:`bounceback.Policy` arguments (``attempts``, ``deadline``,
    ``backoff``, ``max_retry_after``, ``settings``, ``clock``, ``bus``, ...). ``breakers`` is True (one
    ``CircuitBreaker`` per host), False, or a factory ``name -> breaker``; ``breaker_per`` is ``host`` or
    ``route``; ``methods`` the methods that may be retried. ``read_body`` (default True) reads each answer
    inside its attempt, so a connection cut in the middle of the body is retried too; set it to False
    for streamed downloads.

    >>> import asyncio
    >>> async def main():
    ...     async with aiohttp.ClientSession(middlewares=(RecoveringMiddleware(attempts=3),)) as session:
    ...         return session
    >>> _ = asyncio.run(main())
    """

    def __init__(
        self,
        *,
        operation: str = "http",
        breakers: bool | Callable[[str], Any] = True,
        breaker_per: str = "host",
        methods: Iterable[str] = IDEMPOTENT_METHODS,
        classifier: Classifier = DEFAULT_CLASSIFIER,
        read_body: bool = True,
        **policy_options: Any,
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

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Send ``request`` under its policy."""
        url = str(request.url)
        policy = self.recovery.policy(request.method, url, request.headers)
        wall = self.recovery.wall
        read_body = self.read_body

        async def attempt() -> aiohttp.ClientResponse:
            response = await handler(request)
            verdict = classify_status(response.status, response.headers, now=wall())
            if read_body or verdict is not None:
                try:
                    # Read inside the attempt: a body cut short is a failed attempt, and is retried. The
                    # response keeps the bytes, so the caller's read() / text() / json() still work.
                    await response.read()
                finally:
                    response.release()
            if verdict is None:
                return response
            raise RetryableResponse(
                request.method, redact_url(url), response.status, response, verdict.retry_after
            )

        result: aiohttp.ClientResponse = await policy.acall(attempt)
        return result
