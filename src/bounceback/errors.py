"""Every exception bounceback raises, in one tree.

::

    Exception
    └── BouncebackError
        ├── ConfigError            (also a ValueError)  a setting or argument is invalid
        ├── RetriesExhausted       retry on result gave up; no exception to re-raise
        ├── RecoveryCancelled      a person or a token stopped the automatic recovery
        ├── CircuitOpenError       a breaker refused the call (open, forced open, probes busy)
        ├── BulkheadFull           a breaker's in-flight limit refused the call
        │   └── ConcurrencyLimitExceeded  a concurrency limiter was full and its queue too (or timed out)
        ├── RequestThrottled       adaptive client-side throttling refused the call
        │   └── RateLimitExceeded  a rate limiter had no token for the call (``retry_after`` says when)
        ├── AttemptTimeout         (also a TimeoutError) one attempt ran past its timeout
        ├── RecoveryRequired       automatic recovery gave up; a person holds the ticket
        └── StoreError             shared state (SQLite, Redis) could not be read or written

When retries run out on an exception, bounceback re-raises *that* exception, with the attempt history
attached as ``__notes__`` and as ``exc.bounceback_attempts``; it does not wrap it.

Every error carries structured fields (``exc.field``, ``exc.operation``, ``exc.retry_at`` ...) so programs
never need to parse messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "AttemptTimeout",
    "BouncebackError",
    "BulkheadFull",
    "CircuitOpenError",
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "RateLimitExceeded",
    "RecoveryCancelled",
    "RecoveryRequired",
    "RequestThrottled",
    "RetriesExhausted",
    "StoreError",
]


class BouncebackError(Exception):
    """Base class of every error bounceback raises itself."""


class ConfigError(BouncebackError, ValueError):
    """An argument or setting is invalid.

    ``field`` names the parameter or setting key, ``value`` is what was given and ``allowed`` says what
    would be accepted; the message reads ``field: got value; expected allowed``.

    >>> from bounceback import Backoff
    >>> Backoff(initial=-1)
    Traceback (most recent call last):
    ...
    bounceback.errors.ConfigError: initial: got -1; expected a finite number of seconds >= 0
    """

    def __init__(self, field: str, value: Any, allowed: str, *, hint: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.hint = hint
        message = f"{field}: got {value!r}; expected {allowed}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class RetriesExhausted(BouncebackError):
    """Retry on result gave up: the last attempt returned a result the predicate rejected.

    ``last_result`` holds that result and ``attempts`` the number of attempts made.
    """

    def __init__(self, operation: str, attempts: int, last_result: Any, reason: str) -> None:
        self.operation = operation
        self.attempts = attempts
        self.last_result = last_result
        self.reason = reason
        super().__init__(
            f"{operation}: gave up after {attempts} attempt(s) ({reason}); "
            f"the last result was {last_result!r}"
        )


class RecoveryCancelled(BouncebackError):
    """Automatic recovery was cancelled (a person pressed Cancel or Ctrl-C, or a token fired).

    The last error, if any, is ``__cause__`` and ``last_error``.
    """

    def __init__(self, operation: str, attempts: int, reason: str, last_error: BaseException | None) -> None:
        self.operation = operation
        self.attempts = attempts
        self.reason = reason
        self.last_error = last_error
        super().__init__(f"{operation}: automatic recovery cancelled after {attempts} attempt(s): {reason}")


class CircuitOpenError(BouncebackError):
    """A circuit breaker refused the call without running it.

    ``breaker`` is its name, ``state`` the state that refused, ``retry_at`` the wall-clock time (epoch
    seconds) at which it will next let a probe through (``None`` when only a person can reopen it) and
    ``retry_after`` the same as seconds from now.
    """

    # Cheap to raise: a refusal while open is the common case during an outage. The exception is built by
    # the C constructor of Exception (no Python __init__: that alone cost 5x the build), its fields are
    # read from ``args``, and the message is made only when someone reads it (``str(exc)``).
    if TYPE_CHECKING:

        def __init__(
            self, breaker: str, state: str, retry_at: float | None, retry_after: float | None
        ) -> None: ...

    @property
    def breaker(self) -> str:
        """The name of the breaker that refused."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def state(self) -> str:
        """The state that refused: ``open``, ``half_open``, ``forced_open`` or ``store_unavailable``."""
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def retry_at(self) -> float | None:
        """Wall-clock time (epoch seconds) of the next probe, or None when only a person can reopen it."""
        return self.args[2]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float | None:
        """Seconds from the refusal to the next probe, or None."""
        return self.args[3]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        if self.retry_after is None:
            when = "until a person closes or resets it"
        else:
            when = f"for another {self.retry_after:.3g} s"
        return f"circuit {self.breaker!r} is {self.state}: calls are refused {when}"


class BulkheadFull(BouncebackError):
    """A breaker's limit on calls in flight was reached, so this call was refused without running."""

    def __init__(self, breaker: str, limit: int) -> None:
        self.breaker = breaker
        self.limit = limit
        super().__init__(
            f"circuit {breaker!r}: {limit} call(s) already in flight, the configured limit; "
            "raise max_in_flight or slow the callers down"
        )


class RequestThrottled(BouncebackError):
    """Adaptive client-side throttling refused the call without running it: the service has been turning
    requests away, so this one was shed here. ``throttle`` is the throttle's name and ``probability`` the
    chance of refusal at that moment (it falls as the service accepts requests again)."""

    def __init__(self, throttle: str, probability: float) -> None:
        self.throttle = throttle
        self.probability = probability
        super().__init__(
            f"throttle {throttle!r} refused the call locally: the service has been turning requests away "
            f"(refusing {probability:.0%} of calls now); it lets more through as the service accepts again"
        )


class ConcurrencyLimitExceeded(BulkheadFull):
    """A concurrency limiter (bulkhead) refused the call without running it: ``max_in_flight`` calls were
    running and ``max_waiting`` already queued (``reason`` ``"full"``), or the call waited ``queue_timeout``
    seconds in the queue without a slot (``reason`` ``"queue timeout"``). Classified throttled.

    ``limiter`` is the limiter's name (also ``breaker``, as for every :class:`BulkheadFull`), ``limit`` its
    ``max_in_flight``, ``waited`` the seconds spent queued.
    """

    def __init__(self, limiter: str, limit: int, max_waiting: int, reason: str, waited: float = 0.0) -> None:
        super().__init__(limiter, limit)
        self.limiter = limiter
        self.max_waiting = max_waiting
        self.reason = reason
        self.waited = waited
        self.args = (limiter, limit, max_waiting, reason, waited)

    def __str__(self) -> str:
        if self.reason == "queue timeout":
            what = f"waited {self.waited:.3g} s in the queue without a free slot"
        elif self.reason == "store unavailable":
            return (
                f"concurrency limiter {self.limiter!r}: the shared store that holds the fleet's limit "
                "cannot be reached and store.on_unavailable is 'fail-closed'; bring the store back, or set "
                "it to 'fail-open' to run under each process's own limit meanwhile"
            )
        else:
            what = f"{self.limit} call(s) in flight and {self.max_waiting} waiting, the configured limits"
        return (
            f"concurrency limiter {self.limiter!r}: {what}; raise max_in_flight / max_waiting / "
            "queue_timeout or slow the callers down"
        )


class RateLimitExceeded(RequestThrottled):
    """A rate limiter had no token for the call, so it was refused without running (classified throttled,
    not retried by a Policy). ``retry_after`` is the number of seconds until a token is free, the hint to
    give a caller (an HTTP ``Retry-After``); ``rate`` the tokens per second, ``limiter`` the limiter's name.
    """

    def __init__(self, limiter: str, rate: float, retry_after: float, reason: str = "no token") -> None:
        Exception.__init__(self, limiter, rate, retry_after)
        self.throttle = self.limiter = limiter
        self.probability = 1.0
        self.rate = rate
        self.retry_after = retry_after
        self.reason = reason
        """``"no token"``, or ``"store unavailable"`` (a shared bucket's store is away and fails closed)."""

    def __str__(self) -> str:
        if self.reason == "store unavailable":
            return (
                f"rate limiter {self.limiter!r} ({self.rate:g} calls/s) refused the call: the shared store "
                "that holds the fleet's bucket cannot be reached and store.on_unavailable is 'fail-closed'; "
                f"it is asked again in {self.retry_after:.3g} s (or set it to 'fail-open')"
            )
        return (
            f"rate limiter {self.limiter!r} ({self.rate:g} calls/s) refused the call: no token is free "
            f"for another {self.retry_after:.3g} s; retry after that, or raise the rate or the burst"
        )


class AttemptTimeout(BouncebackError, TimeoutError):
    """One attempt ran longer than its per-attempt timeout (or the time left before the deadline)."""

    def __init__(self, operation: str, timeout: float) -> None:
        self.operation = operation
        self.timeout = timeout
        super().__init__(f"{operation}: attempt timed out after {timeout:.3g} s")


class RecoveryRequired(BouncebackError):
    """Automatic recovery gave up; ``ticket`` holds what a person needs to decide what to do next."""

    def __init__(self, ticket: Any, message: str | None = None) -> None:
        self.ticket = ticket
        super().__init__(message or f"automatic recovery gave up; ticket {getattr(ticket, 'id', ticket)}")


class StoreError(BouncebackError):
    """Shared state could not be read or written.

    ``store`` names the store (``sqlite:/path``, ``redis://host``), ``action`` what was being done.
    """

    def __init__(self, store: str, action: str, detail: str) -> None:
        self.store = store
        self.action = action
        self.detail = detail
        super().__init__(f"{store}: could not {action}: {detail}")
