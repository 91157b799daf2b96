"""A rate limiter: a token bucket per operation, waiting for a token or refusing with a Retry-After hint.

The bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second; each call takes one. A call
that finds no token either waits for the next (when that is at most ``max_wait`` seconds away) or is refused
with :class:`~bounceback.errors.RateLimitExceeded`, whose ``retry_after`` is the seconds until a token is
free: the hint to hand on to a caller (an HTTP ``Retry-After``).

A waiting call reserves its token before it sleeps (the count goes below zero), so callers that wait
together are served one per ``1 / rate`` seconds in the order they came, and none is promised a token that
another takes. Over any interval of ``t`` seconds at most ``burst + rate * t`` calls go through.

With ``shared=`` (a :class:`~bounceback.core.strategies._shared.SharedBucket` store: SQLite for the processes
of one machine, Redis for a fleet) the bucket lives in the store and every process draws from it, one
round trip per call; the bound above then holds for the whole fleet. When the store cannot be reached,
``store_unavailable`` (the ``store.on_unavailable`` setting, as for shared breakers) decides: ``fail-open``
carries on under this process's own bucket, ``fail-closed`` refuses calls (``reason`` ``"store
unavailable"``, ``retry_after`` the time until the store is asked again, a second after it failed).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from bounceback.core._events import EventBus, LimitRejected, default_bus
from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.strategies._limiter import _in_event_loop
from bounceback.core.strategies._shared import EPSILON, SharedBucket, StoreGuard
from bounceback.errors import ConfigError, RateLimitExceeded, StoreError

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["RateLimiter"]

T = TypeVar("T")
_EPSILON = EPSILON
_log = logging.getLogger("bounceback.limits")


class RateLimiter:
    """A token bucket: ``rate`` calls per second on average, ``burst`` at once; thread- and task-safe.

    ``max_wait`` (seconds or ``timedelta``, default 0) is the longest a call waits for a token before it is
    refused instead. Use :meth:`acquire` / :meth:`acquire_async`, a decorator, :meth:`call` / :meth:`acall`,
    or give it to a :class:`~bounceback.Policy` (``rate_limit=``): it is the first gate an attempt passes.

    >>> from bounceback.testing import FakeClock
    >>> clock = FakeClock()
    >>> limiter = RateLimiter(10, burst=2, name="search", clock=clock)
    >>> limiter.acquire(); limiter.acquire()     # the burst
    >>> try:
    ...     limiter.acquire()
    ... except RateLimitExceeded as exc:
    ...     print(f"retry after {exc.retry_after:.2f} s")
    retry after 0.10 s
    >>> clock.advance(0.1)
    >>> limiter.acquire()                        # a token came back
    """

    __slots__ = (
        "__weakref__",
        "_bus",
        "_clock",
        "_guard",
        "_lock",
        "_shared",
        "_stamp",
        "_tokens",
        "burst",
        "max_wait",
        "name",
        "rate",
        "rejected",
    )

    def __init__(
        self,
        rate: float,
        *,
        burst: int | None = None,
        max_wait: float | Any = 0.0,
        name: str = "rate-limit",
        clock: Clock | None = None,
        bus: EventBus | None = None,
        shared: SharedBucket | None = None,
        store_unavailable: str | None = None,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1e9:
            raise ConfigError("rate", rate, "calls per second, a number above 0", hint="such as 50 or 0.5")
        self.rate = float(rate)
        if burst is None:
            burst = max(1, math.ceil(self.rate))  # a second's worth by default
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000_000:
            raise ConfigError(
                "burst", burst, "a whole number of calls >= 1", hint="the calls allowed at once"
            )
        self.burst = burst
        self.max_wait = to_seconds(max_wait, "max_wait")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name", name, "a non-empty name such as 'search-api'")
        self.name = name
        self._clock = clock or SYSTEM_CLOCK
        self._bus = bus or default_bus
        self._lock = threading.Lock()
        self._tokens = float(burst)  # full at the start: the first burst goes through at once
        self._stamp = self._clock.monotonic()
        self.rejected = 0
        """Calls refused since creation."""
        if shared is not None and not isinstance(shared, SharedBucket):
            raise ConfigError(
                "shared", shared, "a shared-bucket store such as bounceback.stores.RedisSharedLimits"
            )
        self._shared = shared
        self._guard: StoreGuard | None = None
        if shared is not None:
            mode = store_unavailable or getattr(shared, "on_unavailable", "fail-open")
            self._guard = StoreGuard(shared.name, name, "rate limit", mode, self._clock)

    def reserve(self, max_wait: float) -> float:
        """Take a token now (0.0), or reserve the next one and return the seconds to wait for it; raise
        RateLimitExceeded when that is more than ``max_wait``. The caller does the waiting (a simulator
        schedules it on virtual time); :meth:`acquire` is this plus the sleep."""
        shared, guard = self._shared, self._guard
        if shared is not None and guard is not None:
            if guard.usable():
                try:
                    taken, wait = shared.reserve(self.name, self.rate, self.burst, max_wait)
                except StoreError as exc:
                    guard.failed(exc)
                else:
                    guard.answered()
                    if taken:
                        return wait
                    with self._lock:
                        self.rejected += 1
                    return self._reject(wait)
            if guard.fail_closed:
                with self._lock:
                    self.rejected += 1
                return self._reject(guard.wait(), "store unavailable")
        with self._lock:
            now = self._clock.monotonic()
            tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate) - 1.0
            self._stamp = now
            if tokens >= -_EPSILON:
                self._tokens = max(tokens, 0.0)
                return 0.0
            wait = -tokens / self.rate
            if wait > max_wait:
                self._tokens = tokens + 1.0  # nothing taken
                self.rejected += 1
            else:
                self._tokens = tokens
                return wait
        return self._reject(wait)

    def _reject(self, wait: float, reason: str = "no token") -> float:
        if self._bus.listening:
            self._bus.emit(LimitRejected(self.name, self._clock.wall(), "rate", reason, wait))
        raise RateLimitExceeded(self.name, self.rate, wait, reason)

    def try_acquire(self) -> float:
        """Take a token without waiting: 0.0, or raise RateLimitExceeded (``retry_after`` set)."""
        return self.reserve(0.0)

    def acquire(self) -> None:
        """Take a token, sleeping up to ``max_wait`` on the clock for it; raise RateLimitExceeded otherwise.

        On a thread that runs an event loop (a Policy's async attempt) it never sleeps: a call that would
        have to wait is refused with its hint, since a sleep there would stop every task of the loop.
        """
        if self._shared is None and self._take_now():
            return
        wait = self.reserve(0.0 if self.max_wait and _in_event_loop() else self.max_wait)
        if wait > 0:
            self._clock.sleep(wait)

    def _take_now(self) -> bool:
        """The common case: a token in the local bucket, taken (True); False changes nothing."""
        with self._lock:
            now = self._clock.monotonic()
            tokens = self._tokens + (now - self._stamp) * self.rate - 1.0
            if tokens >= -_EPSILON:
                cap = self.burst - 1.0
                self._tokens = cap if tokens > cap else (tokens if tokens > 0.0 else 0.0)
                self._stamp = now
                return True
        return False

    async def acquire_async(self) -> None:
        """Take a token, awaiting up to ``max_wait`` for it; raise RateLimitExceeded otherwise."""
        if self._shared is None:
            if self._take_now():
                return
            wait = self.reserve(self.max_wait)
        else:
            # The store's round trip on a worker thread: it must not stop the event loop.
            wait = await asyncio.to_thread(self.reserve, self.max_wait)
        if wait > 0:
            await self._clock.async_sleep(wait)

    def available(self) -> float:
        """Tokens in the bucket now (negative while waiting calls hold reservations)."""
        with self._lock:
            now = self._clock.monotonic()
            return min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)

    def fleet_tokens(self) -> float | None:
        """Tokens in the fleet's bucket now, read from the store (a shared limiter); None for a local one
        or while the store cannot be reached."""
        shared, guard = self._shared, self._guard
        if shared is None or guard is None or not guard.usable():
            return None
        try:
            tokens = shared.tokens(self.name, self.rate, self.burst)
        except StoreError as exc:
            guard.failed(exc)
            return None
        guard.answered()
        return tokens

    def snapshot(self) -> dict[str, Any]:
        """For displays: the rate, the burst, the tokens now and the calls refused so far.

        ``tokens`` is this process's bucket; a shared limiter adds ``fleet_tokens`` (the store's bucket,
        None while it cannot be reached) and ``store_unavailable``; ``rate`` is then the fleet's rate."""
        snap: dict[str, Any] = {
            "name": self.name,
            "rate": self.rate,
            "burst": self.burst,
            "tokens": round(self.available(), 3),
            "rejected": self.rejected,
            "shared": self._shared.name if self._shared is not None else None,
        }
        if self._guard is not None:
            fleet = self.fleet_tokens()
            snap["fleet_tokens"] = None if fleet is None else round(fleet, 3)
            snap["store_unavailable"] = self._guard.unavailable
        return snap

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Take a token, then run ``fn(*args, **kwargs)``."""
        self.acquire()
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Take a token (awaiting it), then await ``fn(*args, **kwargs)``."""
        await self.acquire_async()
        return await fn(*args, **kwargs)

    def __call__(self, fn: F) -> F:
        """Decorate a function (sync or ``async def``): every call takes a token first."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                await self.acquire_async()
                return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.acquire()
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    def __repr__(self) -> str:
        return (
            f"RateLimiter({self.name!r}, rate={self.rate:g}, burst={self.burst}, max_wait={self.max_wait:g})"
        )
