"""The health checker: the part of a circuit breaker that works while it is open.

It owns what runs on a timer: the breaker's own health check (a sync or async function; passing moves
the breaker to half-open) with its statistics, and the timed move to half-open (``half_open="timer"``).
A breaker makes this part only when it needs one: when given a ``health_check``, or when it opens with
timed half-open and timers on, or when a test calls ``tick()``. Most breakers never make one.

The part talks to its breaker through three callbacks the breaker hands it: ``view()`` (``(epoch,
open_until)`` while open, else None), ``half_open_due()`` (move to half-open if the open time is over)
and ``passed(epoch)`` (the check passed: move to half-open if still open in that epoch). It never holds
the breaker's lock, and holds its own only for a few attribute writes, never while a check runs.

:meth:`HealthChecker.tick` (sync) and :meth:`HealthChecker.atick` (async) do what is due now and say how
long until the next thing is due. With the real clock the part drives them by itself (``timers=True``,
the default for the system clock): a daemon thread, or a task on the running event loop for an async
health check when the breaker opened inside one. With a fake clock nothing runs by itself; a test
advances the clock and calls ``breaker.tick()``, so no test waits for real.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bounceback.core._events import EventBus, HealthChecked
from bounceback.core._redact import redact
from bounceback.core.breaker._metrics import NO_CHECKS, HealthStats

if TYPE_CHECKING:
    from bounceback.core.breaker._config import BreakerConfig

__all__ = ["HealthChecker"]


class HealthChecker:
    """What a breaker runs while open: its health check and the timed move to half-open.

    Made by :class:`~bounceback.core.breaker._breaker.CircuitBreaker` when needed; see the module docstring.
    """

    __slots__ = (
        "_bus",
        "_config",
        "_driver",
        "_half_open_due",
        "_lock",
        "_name",
        "_now",
        "_passed",
        "_stopping",
        "_view",
        "_wake",
        "_wall",
        "check",
        "due",
        "is_async",
        "stats",
        "timers",
    )

    def __init__(
        self,
        name: str,
        check: Callable[[], Any] | None,
        *,
        config: Callable[[], BreakerConfig],
        view: Callable[[], tuple[int, float] | None],
        half_open_due: Callable[[], object],
        passed: Callable[[int], object],
        now: Callable[[], float],
        wall: Callable[[], float],
        bus: EventBus,
        timers: bool,
    ) -> None:
        self._name = name
        self.check = check
        self.is_async = check is not None and asyncio.iscoroutinefunction(check)
        self._config = config
        self._view = view
        self._half_open_due = half_open_due
        self._passed = passed
        self._now = now
        self._wall = wall
        self._bus = bus
        self.timers = timers
        self._lock = threading.Lock()
        self.due = math.inf
        """Monotonic time of the next check (armed when the breaker opens)."""
        self.stats: HealthStats = NO_CHECKS
        self._driver: Any = None
        self._wake: threading.Event | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        """True while this part's timer thread or task runs."""
        return self._driver is not None

    def arm(self, now: float) -> None:
        """The breaker just opened at ``now``: the first check is due one interval later."""
        self.due = now + self._config().health_check_seconds

    def reset_stats(self) -> None:
        """Forget the checks made so far (``breaker.reset()``)."""
        with self._lock:
            self.stats = NO_CHECKS

    # -- what is due ---------------------------------------------------------------------------------

    def _due(self, now: float) -> tuple[str, float | None]:
        """``("half_open" | "check" | "wait" | "idle", seconds to wait)``."""
        view = self._view()
        if view is None:
            return "idle", None
        open_until = view[1]
        timer = self._config().half_open == "timer"
        if timer and now >= open_until:
            return "half_open", None
        health = self.check is not None
        if health and now >= self.due:
            return "check", None
        nxt = min(open_until if timer else math.inf, self.due if health else math.inf)
        if nxt == math.inf:
            return "idle", None
        return "wait", nxt - now

    def tick(self) -> float | None:
        """Do what is due now; seconds until something is next due, or None (``breaker.tick()``)."""
        while True:
            what, wait = self._due(self._now())
            if what == "half_open":
                self._half_open_due()
            elif what == "check":
                self._check_sync()
            else:
                return wait

    async def atick(self) -> float | None:
        """:meth:`tick` for async code: an async health check is awaited on the running loop."""
        while True:
            what, wait = self._due(self._now())
            if what == "half_open":
                self._half_open_due()
            elif what == "check":
                await self._check_async()
            else:
                return wait

    # -- the health check ----------------------------------------------------------------------------

    def _claim_check(self) -> int | None:
        """Take the due check (so two tickers do not both run it); the breaker's epoch, or None."""
        now = self._now()
        with self._lock:
            view = self._view()
            if view is None or now < self.due or self.check is None:
                return None
            self.due = now + self._config().health_check_seconds
            return view[0]

    def _check_sync(self) -> None:
        if self.is_async and _loop_running():
            raise RuntimeError(
                f"breaker {self._name!r}: its health check is async and an event loop is running here; "
                "use 'await breaker.atick()'"
            )
        epoch = self._claim_check()
        if epoch is None or self.check is None:
            return
        started = self._now()
        try:
            result = asyncio.run(self._bounded(self.check)) if self.is_async else self.check()
        except Exception as exc:
            self._checked(epoch, False, _describe(exc), self._now() - started)
            return
        self._checked(epoch, result is not False, _returned_false(result), self._now() - started)

    async def _check_async(self) -> None:
        epoch = self._claim_check()
        if epoch is None or self.check is None:
            return
        started = self._now()
        try:
            result = await self._bounded(self.check) if self.is_async else self.check()
        except Exception as exc:
            self._checked(epoch, False, _describe(exc), self._now() - started)
            return
        self._checked(epoch, result is not False, _returned_false(result), self._now() - started)

    async def _bounded(self, check: Callable[[], Any]) -> Any:
        # An async check cannot outlive its own interval: a hung check would stop all later ones.
        async with asyncio.timeout(self._config().health_check_seconds):
            return await check()

    def _checked(self, epoch: int, ok: bool, error: str | None, duration: float) -> None:
        with self._lock:
            s = self.stats
            self.stats = replace(
                s,
                checks=s.checks + 1,
                failures=s.failures + (not ok),
                last_at=self._wall(),
                last_ok=ok,
                last_error=error,
                last_duration=duration,
            )
        if self._bus.listening:
            self._bus.emit(HealthChecked(self._name, self._wall(), ok, error, duration))
        if ok:
            self._passed(epoch)

    # -- driving the timers by themselves -------------------------------------------------------------

    def start(self) -> None:
        """The breaker is open: run the timers by themselves if this part drives them and has work."""
        if self.timers and (self.check is not None or self._config().half_open == "timer"):
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
            if self.is_async:
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
            thread = threading.Thread(
                target=self._drive, name=f"bounceback-breaker-{self._name}", daemon=True
            )
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
