"""What HTTP means for recovery, shared by the httpx transport and the requests adapter.

A response whose status says "try again" (408, 425, 429, 500, 502, 503, 504) becomes a
:class:`RetryableResponse` error inside the attempt, so the one retry engine decides; when recovery gives up,
the last response is handed back to the caller as an ordinary response, as HTTP clients expect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from bounceback.core.classify._retry_after import parse_retry_after
from bounceback.core.classify._rules import Classification, ErrorKind, Rule, on_predicate
from bounceback.errors import ConfigError

__all__ = [
    "BreakerPerKey",
    "IDEMPOTENT_METHODS",
    "RETRYABLE_STATUSES",
    "RetryableResponse",
    "THROTTLED_STATUSES",
    "breaker_key",
    "classify_status",
    "redact_url",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods retried by default (RFC 9110 section 9.2.2); POST and PATCH only with an Idempotency-Key."""
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
THROTTLED_STATUSES = frozenset({429, 503})


class RetryableResponse(Exception):
    """A response that asks to be retried, raised inside an attempt; ``response`` is the response itself."""

    def __init__(self, method: str, url: str, status: int, response: Any, retry_after: float | None) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.response = response
        self.retry_after = retry_after
        self.bounceback_kind = ErrorKind.THROTTLED if status in THROTTLED_STATUSES else ErrorKind.TRANSIENT
        super().__init__(f"HTTP {status} from {method} {url}")


def classify_status(
    status: int, headers: Mapping[str, str], *, now: float | None = None
) -> Classification | None:
    """The classification of a response status, or None when the response is a final answer.

    >>> classify_status(503, {"Retry-After": "3"}).retry_after
    3.0
    >>> classify_status(404, {}) is None
    True
    """
    if status not in RETRYABLE_STATUSES:
        return None
    retry_after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"), now=now)
    if status in THROTTLED_STATUSES:
        return Classification(
            ErrorKind.THROTTLED, f"HTTP {status}: the server asks us to slow down", retry_after
        )
    return Classification(ErrorKind.TRANSIENT, f"HTTP {status}", retry_after)


def is_retryable_request(method: str, headers: Mapping[str, str], methods: frozenset[str]) -> bool:
    """Idempotent methods, and any request that carries an Idempotency-Key."""
    return method.upper() in methods or "idempotency-key" in {k.lower() for k in headers}


def breaker_key(url: str, per: str) -> str:
    """The breaker a request goes through: per ``host`` (scheme://host:port) or per ``route`` (plus path)."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.hostname or ''}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    return base if per == "host" else f"{base}{parts.path or '/'}"


def redact_url(url: str) -> str:
    """The URL without credentials or query string (they may hold secrets), for events and logs.

    >>> redact_url("https://user:hunter2@api.example/v1/items?token=abc")
    'https://***@api.example/v1/items?…'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


class BreakerPerKey:
    """Creates one breaker per host (or route) on first use, through ``factory(name)``."""

    def __init__(self, factory: Callable[[str], Any], per: str = "host") -> None:
        if per not in ("host", "route"):
            raise ConfigError("breaker_per", per, "'host' or 'route'")
        self.factory = factory
        self.per = per
        self._lock = threading.Lock()
        self._breakers: dict[str, Any] = {}

    def get(self, url: str) -> Any:
        """The breaker for ``url``."""
        key = breaker_key(url, self.per)
        breaker = self._breakers.get(key)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(key)
                if breaker is None:
                    breaker = self._breakers[key] = self.factory(f"http:{key}")
        return breaker

    def all(self) -> dict[str, Any]:
        """Every breaker created so far, by key."""
        with self._lock:
            return dict(self._breakers)


def transport_rules(types: Iterable[tuple[tuple[type[BaseException], ...], ErrorKind, str]]) -> list[Rule]:
    """Classifier rules for a client library's exception types."""
    rules = []
    for exc_types, kind, reason in types:

        def match(exc: BaseException, wanted: tuple[type[BaseException], ...] = exc_types) -> bool:
            return isinstance(exc, wanted)

        rules.append(
            on_predicate(
                match, kind=kind, reason=reason, name=f"http:{'/'.join(t.__name__ for t in exc_types)}"
            )
        )
    return rules


def _response_or_raise(info: Any) -> Any:
    """Fallback of HTTP policies: hand back the last retryable response; re-raise anything else."""
    error = info.error
    if isinstance(error, RetryableResponse):
        return error.response
    raise error


class HttpRecovery:
    """The policies of an HTTP client: one per breaker key, and single-attempt twins for unsafe methods."""

    def __init__(
        self,
        *,
        operation: str,
        classifier: Any,
        breakers: bool | Callable[[str], Any],
        breaker_per: str,
        methods: Iterable[str],
        policy_options: Mapping[str, Any],
    ) -> None:
        from bounceback.core.policy._policy import Policy

        self._policy_cls = Policy
        self.operation = operation
        clock = policy_options.get("clock")
        # HTTP-dates in Retry-After are measured against the policy's own wall clock (a FakeClock in tests).
        self.wall: Callable[[], float] = clock.wall if clock is not None else time.time
        self.classifier = classifier
        self.methods = frozenset(m.upper() for m in methods)
        self.options = dict(policy_options)
        if "fallback" in self.options:
            raise ConfigError(
                "fallback", self.options["fallback"], "no fallback: HTTP clients get the response"
            )
        factory: Callable[[str], Any] | None
        if breakers is True:
            from bounceback.core.breaker._breaker import CircuitBreaker

            bus = self.options.get("bus")

            def factory(name: str) -> Any:
                kwargs: dict[str, Any] = {}
                if clock is not None:
                    kwargs["clock"] = clock
                if bus is not None:
                    kwargs["bus"] = bus
                return CircuitBreaker(name, **kwargs)

        elif breakers is False:
            factory = None
        else:
            factory = breakers
        self.breakers = BreakerPerKey(factory, breaker_per) if factory is not None else None
        self._lock = threading.Lock()
        self._policies: dict[tuple[str, bool], Any] = {}

    def policy(self, method: str, url: str, headers: Mapping[str, str]) -> Any:
        """The policy for one request."""
        retry = is_retryable_request(method, headers, self.methods)
        key = breaker_key(url, self.breakers.per if self.breakers else "host")
        policy = self._policies.get((key, retry))
        if policy is None:
            with self._lock:
                policy = self._policies.get((key, retry))
                if policy is None:
                    options = dict(self.options)
                    if not retry:
                        options["attempts"] = 1
                    # Every host shares the operation's name, so per-operation settings apply to all of them;
                    # the breakers keep one name per host (or route).
                    policy = self._policy_cls(
                        self.operation,
                        breaker=self.breakers.get(url) if self.breakers else None,
                        classifier=self.classifier,
                        fallback=_response_or_raise,
                        **options,
                    )
                    self._policies[(key, retry)] = policy
        return policy
