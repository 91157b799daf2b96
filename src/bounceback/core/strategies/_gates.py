"""The gates every attempt of a Policy passes, in one fixed order: rate limit, concurrency limit, throttle,
breaker.

Why this order:

- **rate limit first**: it is the cheapest test, and a call that waits for a token must not hold a
  concurrency slot meanwhile (the slot would sit idle while others queue for it);
- **concurrency limit** next: it bounds what is in flight towards the dependency, including probes;
- **throttle** then: it counts only requests that would really be sent, so its accept ratio describes the
  service, not our own limits;
- **breaker** last, nearest the call: it counts the outcomes of calls that were sent.

A refusal by any gate gives back what the gates before it took (a concurrency slot) and is raised as one of
the engine's refusals (``core/retry/_engine.py:REFUSALS``), so the retry engine decides what to do with it. A rate
limiter's token is spent once taken: the call was admitted at that rate even when a later gate refused it.

:class:`Gates` speaks the breaker port (``acquire`` / ``release`` / ``abandon`` / ``fast_path`` /
``count_success`` / ``state_name``), so the Policy's attempt steps are the same with or without gates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bounceback.core.classify._rules import Classification, ErrorKind
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle

__all__ = ["Gates"]


class Gates:
    """The chain of gates of one Policy; every member is optional but at least one is present.

    ``acquire`` / ``release`` / ``abandon`` / ``acquire_async`` are built once, at construction, from the
    gates present: an absent gate costs nothing on a call (no test for it, no call), and the success path
    allocates nothing. A chain of one concurrency limiter is that limiter's own ``acquire``.
    """

    __slots__ = (
        "abandon",
        "acquire",
        "acquire_async",
        "breaker",
        "limiter",
        "name",
        "rate_limit",
        "release",
        "throttle",
    )

    fast_path = False  # limiters and throttles see every call: never the breaker's no-permit path

    def __init__(
        self,
        *,
        rate_limit: RateLimiter | None = None,
        limiter: ConcurrencyLimiter | None = None,
        throttle: AdaptiveThrottle | None = None,
        breaker: Any = None,
    ) -> None:
        self.rate_limit = rate_limit
        self.limiter = limiter
        self.throttle = throttle
        self.breaker = breaker
        first = breaker or throttle or limiter or rate_limit
        self.name = first.name if first is not None else "gates"
        self.acquire: Callable[[], Any] = _acquire(rate_limit, limiter, throttle, breaker)
        """Pass every gate in order, or raise the first refusal; returns the breaker's permit."""
        self.acquire_async: Callable[[], Awaitable[Any]] = _acquire_async(
            rate_limit, limiter, throttle, breaker
        )
        """:attr:`acquire` for async callers: waits for a token and queues for a slot on the event loop
        (a sync ``acquire`` there could only refuse, since blocking would stop the tasks that free slots)."""
        self.release: Callable[[Any, Classification | None], None] = _release(limiter, throttle, breaker)
        """Count the outcome in the breaker and the throttle, then free the concurrency slot."""
        self.abandon: Callable[[Any], None] = _abandon(limiter, breaker)
        """A call ended without an outcome: give back the breaker's permit and the slot."""

    def count_success(self) -> None:
        """Never called: ``fast_path`` is always false."""

    @property
    def state_name(self) -> str:
        """The breaker's state, or ``closed`` without one."""
        return self.breaker.state_name if self.breaker is not None else "closed"

    def __repr__(self) -> str:
        present = [
            gate.__class__.__name__
            for gate in (self.rate_limit, self.limiter, self.throttle, self.breaker)
            if gate is not None
        ]
        return f"Gates({self.name!r}, {' -> '.join(present)})"


def _nothing() -> None:
    return None


def _acquire(
    rate_limit: RateLimiter | None,
    limiter: ConcurrencyLimiter | None,
    throttle: AdaptiveThrottle | None,
    breaker: Any,
) -> Callable[[], Any]:
    take_token = rate_limit.acquire if rate_limit is not None else None
    take_slot = limiter.acquire if limiter is not None else None
    give_slot = limiter.release if limiter is not None else None
    check = throttle.check if throttle is not None else None
    permit = breaker.acquire if breaker is not None else _nothing
    if take_token is None and check is None and breaker is None and take_slot is not None:
        return take_slot  # the limiter alone
    if take_slot is None and check is None and breaker is None and take_token is not None:
        return take_token  # the rate limit alone

    def acquire() -> Any:
        if take_token is not None:
            take_token()
        if take_slot is None:
            if check is not None:
                check()
            return permit()
        take_slot()
        try:
            if check is not None:
                check()
            # A breaker refusal is not sent either: the throttle counted a request and will count no accept.
            return permit()
        except BaseException:
            give_slot()  # type: ignore[misc]
            raise

    return acquire


def _acquire_async(
    rate_limit: RateLimiter | None,
    limiter: ConcurrencyLimiter | None,
    throttle: AdaptiveThrottle | None,
    breaker: Any,
) -> Callable[[], Awaitable[Any]]:
    take_token = rate_limit.acquire_async if rate_limit is not None else None
    take_slot = limiter.acquire_async if limiter is not None else None
    give_slot = limiter.release if limiter is not None else None
    check = throttle.check if throttle is not None else None
    permit = breaker.acquire if breaker is not None else _nothing

    async def acquire_async() -> Any:
        if take_token is not None:
            await take_token()
        if take_slot is None:
            if check is not None:
                check()
            return permit()
        await take_slot()
        try:
            if check is not None:
                check()
            return permit()
        except BaseException:
            give_slot()  # type: ignore[misc]
            raise

    return acquire_async


def _release(
    limiter: ConcurrencyLimiter | None, throttle: AdaptiveThrottle | None, breaker: Any
) -> Callable[[Any, Classification | None], None]:
    give_slot = limiter.release if limiter is not None else None
    accept = throttle.record_accept if throttle is not None else None
    settle = breaker.release if breaker is not None else None
    if settle is None and accept is None and give_slot is not None:
        slot_only = give_slot

        def release_slot(_permit: Any, _failure: Classification | None) -> None:
            slot_only()

        return release_slot

    def release(permit: Any, failure: Classification | None) -> None:
        try:
            if settle is not None:
                settle(permit, failure)
            if accept is not None and (failure is None or failure.kind is ErrorKind.PERMANENT):
                accept()  # the service answered (see is_accepted)
        finally:
            if give_slot is not None:
                give_slot()

    return release


def _abandon(limiter: ConcurrencyLimiter | None, breaker: Any) -> Callable[[Any], None]:
    give_slot = limiter.release if limiter is not None else None
    drop = breaker.abandon if breaker is not None else None

    def abandon(permit: Any) -> None:
        try:
            if drop is not None:
                drop(permit)
        finally:
            if give_slot is not None:
                give_slot()

    return abandon
