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

from typing import Any

from bounceback.core.classify._rules import Classification
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle, is_accepted

__all__ = ["Gates"]


class Gates:
    """The chain of gates of one Policy; every member is optional but at least one is present."""

    __slots__ = ("breaker", "limiter", "name", "rate_limit", "throttle")

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

    def count_success(self) -> None:
        """Never called: ``fast_path`` is always false."""

    @property
    def state_name(self) -> str:
        """The breaker's state, or ``closed`` without one."""
        return self.breaker.state_name if self.breaker is not None else "closed"

    def acquire(self) -> Any:
        """Pass every gate in order, or raise the first refusal; returns the breaker's permit."""
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        limiter = self.limiter
        if limiter is not None:
            limiter.acquire()
        try:
            if self.throttle is not None:
                self.throttle.check()
            # A breaker refusal is not sent either: the throttle counted a request and will count no accept.
            return self.breaker.acquire() if self.breaker is not None else None
        except BaseException:
            if limiter is not None:
                limiter.release()
            raise

    async def acquire_async(self) -> Any:
        """:meth:`acquire` for async callers: waits for a token and queues for a slot on the event loop
        (a sync ``acquire`` there could only refuse, since blocking would stop the tasks that free slots)."""
        if self.rate_limit is not None:
            await self.rate_limit.acquire_async()
        limiter = self.limiter
        if limiter is not None:
            await limiter.acquire_async()
        try:
            if self.throttle is not None:
                self.throttle.check()
            return self.breaker.acquire() if self.breaker is not None else None
        except BaseException:
            if limiter is not None:
                limiter.release()
            raise

    def release(self, permit: Any, failure: Classification | None) -> None:
        """Count the outcome in the breaker and the throttle, then free the concurrency slot."""
        try:
            if self.breaker is not None:
                self.breaker.release(permit, failure)
            if self.throttle is not None:
                self.throttle.record(True, is_accepted(failure))
        finally:
            if self.limiter is not None:
                self.limiter.release()

    def abandon(self, permit: Any) -> None:
        """A call ended without an outcome: give back the breaker's permit and the slot."""
        try:
            if self.breaker is not None:
                self.breaker.abandon(permit)
        finally:
            if self.limiter is not None:
                self.limiter.release()
