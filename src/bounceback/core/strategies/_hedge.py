"""Hedging: when a call is slow, start another copy of it; the first success wins.

A slow answer is often a slow *replica*, not a slow request: a second copy of the call, started after a
delay, usually lands elsewhere and answers sooner. After ``delay`` (fixed seconds, or a percentile of the
latencies this hedge has seen, such as ``"p95"``) with no answer, a hedge starts another attempt, up to
``max_hedges`` more. The first success is returned; the other attempts are cancelled (asyncio) or abandoned
with their results discarded (threads cannot be stopped). A failure of one attempt does not end the call
while another is still running; a failure with nothing running starts the next hedge at once, if any is left.

Hedges multiply load, so they are bounded twice: each one spends from a retry budget (by default the
operation's, the one its Policy spends from), and a hedge is only built for an operation marked
``idempotent=True``: a request that must not run twice (a payment, an append) is never hedged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import math
import re
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from bounceback.core._events import AttemptHedged, EventBus, default_bus
from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.retry._budget import budget_from_settings
from bounceback.core.settings._layers import DEFAULTS
from bounceback.errors import ConfigError

__all__ = ["Hedge"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_SAMPLES = 200  # latencies kept for a percentile delay
_MIN_SAMPLES = 20  # fewer than this: the fallback delay is used
_UNSET: Any = object()


def _from_settings(values: Any, delay: Any, initial_delay: Any, max_hedges: Any) -> tuple[Any, Any, Any]:
    """The limits from resolved ``hedge.*`` values, where code did not give them."""
    if delay is _UNSET:
        percentile = values["hedge.percentile"]
        delay = f"p{percentile:g}" if percentile else values["hedge.delay"]
    if initial_delay is _UNSET:
        initial_delay = values["hedge.delay"]
    if max_hedges is _UNSET:
        max_hedges = values["hedge.max_hedges"]
    return delay, initial_delay, max_hedges


class Hedge:
    """Start another attempt of a slow call after ``delay``; the first success wins. Thread- and task-safe.

    ``delay`` is seconds (or ``timedelta``) or a percentile of observed latencies (``"p90"``, ``"p99"``;
    ``initial_delay`` until 20 calls have been seen). ``max_hedges`` bounds the extra attempts per call.
    What code does not give comes from ``settings`` (``hedge.delay``, ``hedge.percentile``,
    ``hedge.max_hedges`` of the operation, followed live), or the built-in defaults.
    ``idempotent=True`` is required: you state that running the call twice is harmless. ``budget`` is a
    retry budget each hedge spends from (default: the operation's own, shared with its Policy; ``None``
    for none). ``max_workers`` bounds the threads that run sync attempts.

    >>> import asyncio
    >>> from bounceback.testing import FakeClock
    >>> clock = FakeClock()
    >>> hedge = Hedge("replicas", delay=0.05, idempotent=True, clock=clock, budget=None)
    >>> stuck = asyncio.Event()
    >>> answers = iter(["slow replica", "fast replica"])
    >>> async def read():
    ...     answer = next(answers)
    ...     if answer == "slow replica":
    ...         await stuck.wait()        # never answers
    ...     return answer
    >>> asyncio.run(hedge.acall(read))
    'fast replica'
    >>> hedge.hedged, hedge.won_by_hedge
    (1, 1)
    """

    __slots__ = (
        "__weakref__",
        "_budget",
        "_bus",
        "_clock",
        "_cutoff",
        "_lock",
        "_percentile",
        "_pool",
        "_samples",
        "_seen",
        "_unsubscribe",
        "delay",
        "hedged",
        "initial_delay",
        "max_hedges",
        "max_workers",
        "name",
        "won_by_hedge",
    )

    def __init__(
        self,
        name: str,
        *,
        delay: float | str | Any = _UNSET,
        idempotent: bool = False,
        max_hedges: int | Any = _UNSET,
        initial_delay: float | Any = _UNSET,
        budget: Any = _UNSET,
        settings: Any = None,
        max_workers: int = 32,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name", name, "the operation's name, such as 'read-replica'")
        if idempotent is not True:
            raise ConfigError(
                "idempotent",
                idempotent,
                "True, to state that running the call twice is harmless",
                hint="a hedge sends the same request again while the first may still land; never hedge a "
                "payment or an append",
            )
        self.name = name
        given_delay, given_initial, given_max = delay, initial_delay, max_hedges
        if initial_delay is _UNSET and settings is None:
            initial_delay = DEFAULTS["hedge.delay"]
        if max_hedges is _UNSET and settings is None:
            max_hedges = DEFAULTS["hedge.max_hedges"]
        self._unsubscribe: Callable[[], None] | None = None
        if settings is not None:
            values = {**DEFAULTS, **settings.effective(name)}
            delay, initial_delay, max_hedges = _from_settings(values, delay, initial_delay, max_hedges)
        elif delay is _UNSET:
            delay = DEFAULTS["hedge.delay"]
        self._percentile: float | None = None
        self.delay: float | str = 0.0
        self.initial_delay = 0.0
        self.max_hedges = 1
        self._configure(delay, initial_delay, max_hedges)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 2:
            raise ConfigError("max_workers", max_workers, "a whole number >= 2 (an attempt and its hedge)")
        self.max_workers = max_workers
        self._clock = clock or SYSTEM_CLOCK
        self._bus = bus or default_bus
        if budget is _UNSET:
            budget = budget_from_settings(settings, name, clock)
        self._budget = budget
        self._lock = threading.Lock()
        self._samples: deque[float] = deque(maxlen=_SAMPLES)
        self._seen = 0
        self._cutoff = self.initial_delay
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.hedged = 0
        """Hedges started since creation."""
        self.won_by_hedge = 0
        """Calls whose answer came from a hedge rather than the first attempt."""
        if settings is not None:
            ref = weakref.ref(self)
            given = (given_delay, given_initial, given_max)

            def on_change() -> None:
                hedge = ref()
                if hedge is not None:
                    hedge.reload(settings, given)

            self._unsubscribe = settings.subscribe(on_change)

    def _configure(self, delay: Any, initial_delay: Any, max_hedges: Any) -> None:
        """Validate and set the limits (all or nothing)."""
        percentile: float | None = None
        if isinstance(delay, str) and _PERCENTILE.match(delay.strip()):
            percentile = float(delay.strip()[1:]) / 100
            if not 0 < percentile < 1:
                raise ConfigError("delay", delay, "a percentile from p1 to p99, or seconds")
            fixed: float | str = delay.strip()
        else:
            try:
                fixed = to_seconds(delay, "delay", allow_zero=False)
            except ConfigError:
                raise ConfigError("delay", delay, "seconds (0.2, '200ms') or a percentile ('p95')") from None
        initial = to_seconds(initial_delay, "initial_delay", allow_zero=False)
        if isinstance(max_hedges, bool) or not isinstance(max_hedges, int) or not 1 <= max_hedges <= 10:
            raise ConfigError("max_hedges", max_hedges, "a whole number from 1 to 10", hint="1 is usual")
        self._percentile, self.delay, self.initial_delay, self.max_hedges = (
            percentile,
            fixed,
            initial,
            max_hedges,
        )
        if percentile is None or not getattr(self, "_samples", None):
            self._cutoff = initial

    def reload(self, settings: Any, given: tuple[Any, Any, Any] = (_UNSET, _UNSET, _UNSET)) -> None:
        """Read the ``hedge.*`` settings of the operation now (done by itself on every settings change);
        values given in code stay. A bad value leaves the last good ones in force."""
        values = {**DEFAULTS, **settings.effective(self.name)}
        try:
            self._configure(*_from_settings(values, *given))
        except ConfigError:
            logging.getLogger("bounceback.hedge").warning(
                "hedge settings for %r are invalid; keeping the last good values", self.name, exc_info=True
            )

    def close(self) -> None:
        """Stop following settings changes, and the worker threads once their attempts end."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def budget(self) -> Any:
        """The retry budget each hedge spends from (None: none); a Policy given this hedge checks it is its own."""
        return self._budget

    # -- the delay -----------------------------------------------------------------------------------

    def current_delay(self) -> float:
        """Seconds to wait before the next hedge: the fixed delay, or the percentile of recent latencies."""
        if self._percentile is None:
            return cast(float, self.delay)
        return self._cutoff

    def _observe(self, seconds: float) -> None:
        if self._percentile is None:
            return
        with self._lock:
            self._samples.append(seconds)
            self._seen += 1
            # Sorting 200 numbers costs microseconds: redo it every tenth sample, not on every call.
            if len(self._samples) >= _MIN_SAMPLES and self._seen % 10 == 0:
                ordered = sorted(self._samples)
                index = min(len(ordered) - 1, max(0, math.ceil(self._percentile * len(ordered)) - 1))
                self._cutoff = max(ordered[index], 1e-6)

    def _may_hedge(self) -> bool:
        budget = self._budget
        if budget is not None and not budget.try_spend(self.name):
            return False
        self.hedged += 1
        return True

    def _tell(self, number: int, after: float) -> None:
        if self._bus.listening:
            self._bus.emit(AttemptHedged(self.name, self._clock.wall(), number, after))

    # -- sync: attempts on worker threads -----------------------------------------------------------

    def _timed(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        """One attempt, its own latency observed when it succeeds (the delay's percentile is of attempts)."""
        begun = self._clock.monotonic()
        result = fn(*args, **kwargs)
        self._observe(self._clock.monotonic() - begun)
        return result

    async def _timed_async(self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
        begun = self._clock.monotonic()
        result = await fn(*args, **kwargs)
        self._observe(self._clock.monotonic() - begun)
        return result

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix=f"bounceback-hedge-{self.name}"
                )
            return self._pool

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` with hedges; the attempts run on worker threads, the caller waits.

        The wait for the delay is a real one (threads are not driven by a FakeClock); latencies are measured
        on the clock. A losing attempt keeps running to its end on its thread; its result is discarded.
        """
        pool = self._executor()
        started = self._clock.monotonic()
        first = pool.submit(self._timed, fn, args, kwargs)
        running = {first}
        hedges = 0
        last_error: BaseException | None = None
        while True:
            can_hedge = hedges < self.max_hedges
            done, running = concurrent.futures.wait(
                running,
                timeout=self.current_delay() if can_hedge else None,
                return_when=concurrent.futures.FIRST_COMPLETED,
            )
            for future in done:
                error = future.exception()
                if error is None:
                    for other in running:
                        other.cancel()  # not started yet: never runs; running: abandoned, result discarded
                    if future is not first:
                        self.won_by_hedge += 1
                    return future.result()
                last_error = error
            if (done and running) or not can_hedge:
                if not running:
                    raise cast(BaseException, last_error)
                continue
            # The delay passed with no answer, or every attempt failed: hedge, if the budget allows.
            if not self._may_hedge():
                if not running:
                    raise cast(BaseException, last_error)
                hedges = self.max_hedges
                continue
            hedges += 1
            self._tell(hedges, self._clock.monotonic() - started)
            running.add(pool.submit(self._timed, fn, args, kwargs))

    # -- async: attempts as tasks -------------------------------------------------------------------

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` with hedges; the losers are cancelled. The delay is awaited on the
        clock (a FakeClock drives it in tests)."""
        started = self._clock.monotonic()
        first: asyncio.Future[T] = asyncio.ensure_future(self._timed_async(fn, args, kwargs))
        running: set[asyncio.Future[Any]] = {first}
        timer: asyncio.Future[Any] | None = None
        hedges = 0
        last_error: BaseException | None = None
        try:
            while True:
                can_hedge = hedges < self.max_hedges
                if can_hedge and timer is None:
                    timer = asyncio.ensure_future(self._clock.async_sleep(self.current_delay()))
                waiting = running | ({timer} if timer is not None else set())
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                fired = timer is not None and timer in done
                if fired:
                    timer = None
                for task in done & running:
                    running.discard(task)
                    error = task.exception()
                    if error is None:
                        if task is not first:
                            self.won_by_hedge += 1
                        return cast(T, task.result())
                    last_error = error
                if not (fired or (not running and can_hedge)):
                    if not running and not can_hedge:
                        raise cast(BaseException, last_error)
                    continue
                if not can_hedge or not self._may_hedge():
                    hedges = self.max_hedges
                    if not running:
                        raise cast(BaseException, last_error)
                    continue
                hedges += 1
                self._tell(hedges, self._clock.monotonic() - started)
                running.add(asyncio.ensure_future(self._timed_async(fn, args, kwargs)))
        finally:
            # The first success won, or the call failed or was cancelled: stop everything still running.
            leftovers = [t for t in (*running, timer) if t is not None and not t.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                await asyncio.gather(*leftovers, return_exceptions=True)

    def __call__(self, fn: F) -> F:
        """Decorate a function (sync or ``async def``) so every call is hedged."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self.call(fn, *args, **kwargs)

        return cast(F, wrapper)

    def __repr__(self) -> str:
        return f"Hedge({self.name!r}, delay={self.delay!r}, max_hedges={self.max_hedges})"
