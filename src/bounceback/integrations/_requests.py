"""A requests adapter that recovers by itself: ``session.mount("https://", RecoveringAdapter())``.

The same rules as the httpx transport: retryable statuses and connection errors are retried with
backoff, ``Retry-After`` is honoured, only idempotent methods are retried, one breaker per host. urllib3's
own retries are switched off so they never stack with ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import requests
import requests.adapters
import requests.exceptions as rex

from bounceback.core.classify._rules import DEFAULT_CLASSIFIER, Classifier, ErrorKind
from bounceback.integrations._http import (
    IDEMPOTENT_METHODS,
    HttpRecovery,
    RetryableResponse,
    classify_status,
    redact_url,
    transport_rules,
)

__all__ = ["REQUESTS_CLASSIFIER", "RecoveringAdapter"]

REQUESTS_CLASSIFIER: Classifier = DEFAULT_CLASSIFIER.with_rules(
    *transport_rules(
        [
            (
                (rex.InvalidURL, rex.MissingSchema, rex.InvalidSchema, rex.InvalidHeader),
                ErrorKind.PERMANENT,
                "the request itself is wrong",
            ),
            ((rex.SSLError,), ErrorKind.PERMANENT, "TLS verification failed"),
            ((rex.Timeout,), ErrorKind.TRANSIENT, "the request timed out"),
            ((rex.ConnectionError, rex.ChunkedEncodingError), ErrorKind.TRANSIENT, "the connection failed"),
        ]
    ),
)
"""The default classifier plus requests' exception types."""


class RecoveringAdapter(requests.adapters.HTTPAdapter):
    """A requests transport adapter applying a policy per request (arguments as ``RecoveringTransport``).

    >>> session = requests.Session()
    >>> session.mount("http://", RecoveringAdapter(attempts=3))
    >>> session.close()
    """

    def __init__(
        self,
        *,
        operation: str = "http",
        breakers: bool | Callable[[str], Any] = True,
        breaker_per: str = "host",
        methods: Iterable[str] = IDEMPOTENT_METHODS,
        classifier: Classifier = REQUESTS_CLASSIFIER,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        **policy_options: Any,
    ) -> None:
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)
        self.recovery = HttpRecovery(
            operation=operation,
            classifier=classifier,
            breakers=breakers,
            breaker_per=breaker_per,
            methods=methods,
            policy_options=policy_options,
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send ``request`` under its policy."""
        url = request.url or ""
        policy = self.recovery.policy(request.method or "GET", url, request.headers)
        send = super().send
        wall = self.recovery.wall

        def attempt() -> requests.Response:
            response = send(request, *args, **kwargs)
            verdict = classify_status(response.status_code, response.headers, now=wall())
            if verdict is None:
                return response
            _ = response.content  # read the body so the connection goes back to the pool
            raise RetryableResponse(
                request.method or "GET", redact_url(url), response.status_code, response, verdict.retry_after
            )

        result: requests.Response = policy.call(attempt)
        return result
