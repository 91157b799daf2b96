"""Timers of a circuit breaker: the timed move to half-open, and the health check run while open.

:meth:`tick` (sync) and :meth:`atick` (async) do what is due now and say how long until the next thing
is due. With the real clock the breaker drives them by itself (``timers=True``, the default for the
system clock): a daemon thread, or a task on the running event loop for an async health check when the
breaker opened inside one. With a fake clock nothing runs by itself; a test advances the clock and calls
``tick()``, so no test waits for real.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bounceback.core._events import HealthChecked
from bounceback.core._redact import redact
from bounceback.core.breaker._core import BreakerState, Change, _BreakerCore
from bounceback.core.breaker._metrics import HealthStats

__all__: list[str] = []

_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


class _HealthMixin(_BreakerCore):
    __slots__ = ()

    _health: Callable[[], Any] | None
    _health_async: bool
    _health_stats: HealthStats
    _timers: bool
    _driver: Any
    _wake: threading.Event | None
    _stopping: bool

    def _watched(self) -> bool:
        return self._health is not None

    # -- what is due ---------------------------------------------------------------------------------

    def _due(self, now: float) -> tuple[str, float | None]:
        """``("half_open" | "check" | "wait" | "idle", seconds to wait)``. Reads without the lock."""
        if self._state is not _OPEN:
            return "idle", None
        timer = self._cfg.half_open == "timer"
        if timer and now >= self._open_until:
            return "half_open", None
        health = self._health is not None
        if health and now >= self._health_due:
            return "check", None
        nxt = min(self._open_until if timer else math.inf, self._health_due if health else math.inf)
        if nxt == math.inf:
            return "idle", None
        return "wait", nxt - now

    def tick(self) -> float | None:
        """Do what is due now: move to half-open when the open time is over (``half_open="timer"``) and
        run the health check when it is due. Returns seconds until something is next due, or None.

        An async health check runs to completion here only when no event loop runs in this thread; inside
        one, use :meth:`atick`.

        >>> from bounceback import CircuitBreaker
        >>> from bounceback.testing import FakeClock
        >>> clock = FakeClock()
        >>> brk = CircuitBreaker("docs-tick", half_open="timer", open_seconds=10, clock=clock)
        >>> brk.force_open(); brk.force_close()
        >>> brk.tick() is None
        True
        """
        while True:
            what, wait = self._due(self._now())
            if what == "half_open":
                self._timer_half_open()
            elif what == "check":
                self._check_sync()
            else:
                return wait

    async def atick(self) -> float | None:
        """:meth:`tick` for async code: an async health check is awaited on the running loop."""
        while True:
            what, wait = self._due(self._now())
            if what == "half_open":
                self._timer_half_open()
            elif what == "check":
                await self._check_async()
            else:
                return wait

    def _timer_half_open(self) -> None:
        now = self._now()
        change: Change | None = None
        with self._lock:
            if self._state is _OPEN and now >= self._open_until:
                change = self._move(_HALF_OPEN, "the open time is over")
        self._after(change)

    # -- the health check ----------------------------------------------------------------------------

    def _claim_check(self) -> int | None:
        """Take the due check (so two tickers do not both run it); its epoch, or None."""
        now = self._now()
        with self._lock:
            if self._state is not _OPEN or now < self._health_due or self._health is None:
                return None
            self._health_due = now + self._cfg.health_check_seconds
            return self._epoch

    def _check_sync(self) -> None:
        if self._health_async and _loop_running():
            raise RuntimeError(
                f"breaker {self.name!r}: its health check is async and an event loop is running here; "
                "use 'await breaker.atick()'"
            )
        epoch = self._claim_check()
        if epoch is None or self._health is None:
            return
        started = self._now()
        try:
            result = asyncio.run(self._bounded(self._health)) if self._health_async else self._health()
        except Exception as exc:
            self._checked(epoch, False, _describe(exc), self._now() - started)
            return
        self._checked(epoch, result is not False, _returned_false(result), self._now() - started)

    async def _check_async(self) -> None:
        epoch = self._claim_check()
        if epoch is None or self._health is None:
            return
        started = self._now()
        try:
            result = await self._bounded(self._health) if self._health_async else self._health()
        except Exception as exc:
            self._checked(epoch, False, _describe(exc), self._now() - started)
            return
        self._checked(epoch, result is not False, _returned_false(result), self._now() - started)

    async def _bounded(self, check: Callable[[], Any]) -> Any:
        # An async check cannot outlive its own interval: a hung check would stop all later ones.
        async with asyncio.timeout(self._cfg.health_check_seconds):
            return await check()

    def _checked(self, epoch: int, ok: bool, error: str | None, duration: float) -> None:
        change: Change | None = None
        with self._lock:
            s = self._health_stats
            self._health_stats = replace(
                s,
                checks=s.checks + 1,
                failures=s.failures + (not ok),
                last_at=self._wall(),
                last_ok=ok,
                last_error=error,
                last_duration=duration,
            )
            if ok and self._epoch == epoch and self._state is _OPEN:
                change = self._move(_HALF_OPEN, "the health check passed")
        if self._bus.listening:
            self._bus.emit(HealthChecked(self.name, self._wall(), ok, error, duration))
        self._after(change)

    # -- driving the timers by themselves -------------------------------------------------------------

    def _opened(self) -> None:
        if self._timers and (self._health is not None or self._cfg.half_open == "timer"):
            self._start_driver()

    def _start_driver(self) -> None:
        thread: threading.Thread | None = None
        with self._lock:
            self._stopping = False
            driver = self._driver
            if driver is not None:
                # Already running: wake it, the due time may have moved.
                if isinstance(driver, tuple):
                    loop, wake = driver
                    loop.call_soon_threadsafe(wake.set)
                elif self._wake is not None:
                    self._wake.set()
                return
            if self._health_async:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    wake = asyncio.Event()
                    self._driver = (loop, wake)
                    task = loop.create_task(self._adrive(wake))
                    task.add_done_callback(_TASKS.discard)
                    _TASKS.add(task)
                    return
            if self._wake is None:
                self._wake = threading.Event()
            thread = threading.Thread(target=self._drive, name=f"bounceback-breaker-{self.name}", daemon=True)
            self._driver = thread
        thread.start()

    def _should_stop(self, wait: float | None) -> bool:
        with self._lock:
            if self._stopping or (wait is None and self._due(self._now())[0] == "idle"):
                self._driver = None
                return True
            return False

    def _drive(self) -> None:
        wake = self._wake
        assert wake is not None  # made before the thread starts
        while True:
            wait = self.tick()
            if self._should_stop(wait):
                return
            if wait is not None:
                wake.wait(wait)
                wake.clear()

    async def _adrive(self, wake: asyncio.Event) -> None:
        try:
            while True:
                wait = await self.atick()
                if self._should_stop(wait):
                    return
                if wait is not None:
                    try:
                        async with asyncio.timeout(wait):
                            await wake.wait()
                    except TimeoutError:
                        pass
                    wake.clear()
        finally:
            with self._lock:
                if self._driver is not None and isinstance(self._driver, tuple):
                    self._driver = None

    def close(self) -> None:
        """Stop the breaker's own timers (they also stop by themselves once it is no longer open)."""
        with self._lock:
            self._stopping = True
            driver = self._driver
        if isinstance(driver, tuple):
            loop, wake = driver
            if not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)
        elif self._wake is not None:
            self._wake.set()


_TASKS: set[asyncio.Task[None]] = set()
"""Strong references to running driver tasks (the loop keeps only weak ones)."""


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    text = redact(str(exc), 200)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _returned_false(result: Any) -> str | None:
    return "the health check returned False" if result is False else None
