"""The clock port, cancellation, and durations.

Everything in bounceback that waits or reads time goes through a :class:`Clock`, so tests can use
``bounceback.testing.FakeClock`` and never sleep for real. Durations are measured on the monotonic clock;
wall time is used only for display and for times shared with other processes.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from datetime import timedelta
from typing import Protocol, runtime_checkable

from bounceback.errors import ConfigError

__all__ = [
    "CancelToken",
    "Clock",
    "Duration",
    "SYSTEM_CLOCK",
    "SystemClock",
    "parse_duration",
    "to_seconds",
    "waits_enabled",
]

Duration = float | int | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""


@runtime_checkable
class Clock(Protocol):
    """What bounceback needs from time: a monotonic reading, a wall reading, and two ways to wait.

    ``sleep`` and ``async_sleep`` return early when ``cancel`` fires; callers check ``cancel.is_cancelled``.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (for display and for times shared between processes)."""
        ...

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Block the calling thread for ``seconds`` or until ``cancel`` fires."""
        ...

    async def async_sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Suspend the calling task for ``seconds`` or until ``cancel`` fires."""
        ...


class CancelToken:
    """Stops an automatic recovery from any thread or task; a wait in progress ends at once.

    >>> token = CancelToken()
    >>> token.cancel("operator pressed Cancel")
    >>> token.is_cancelled, token.reason
    (True, 'operator pressed Cancel')
    """

    __slots__ = ("_children", "_event", "_lock", "_waiters", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._children: list[CancelToken] = []
        self.reason: str | None = None

    def child(self) -> CancelToken:
        """A token that is cancelled with this one, and can also be cancelled alone."""
        token = CancelToken()
        with self._lock:
            if not self._event.is_set():
                self._children.append(token)
                return token
        token.cancel(self.reason or "cancelled")
        return token

    def forget(self, child: CancelToken) -> None:
        """Stop propagating to ``child`` (when its run has ended)."""
        with self._lock:
            if child in self._children:
                self._children.remove(child)

    @property
    def is_cancelled(self) -> bool:
        """True once :meth:`cancel` has been called."""
        return self._event.is_set()

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel: every current and future wait on this token returns at once. Safe from any thread."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            waiters, self._waiters = self._waiters, []
            children, self._children = self._children, []
        for loop, fut in waiters:
            # The future belongs to another thread's loop: wake it through that loop.
            loop.call_soon_threadsafe(_resolve, fut)
        for child in children:
            child.cancel(reason)

    def wait(self, seconds: float) -> bool:
        """Block up to ``seconds``; True if cancelled (then it returned early)."""
        return self._event.wait(seconds)

    async def async_wait(self, seconds: float) -> bool:
        """Suspend up to ``seconds``; True if cancelled."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return True
            entry = (loop, fut)
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        return self._event.is_set()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time``, ``time.sleep`` and ``asyncio.sleep``."""

    __slots__ = ()

    # The C functions themselves, not wrappers: reading the clock costs no Python frame.
    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Sleep, returning early when ``cancel`` fires."""
        if cancel is None:
            time.sleep(seconds)
        else:
            cancel.wait(seconds)

    async def async_sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Sleep in the event loop, returning early when ``cancel`` fires."""
        if cancel is None:
            await asyncio.sleep(seconds)
        else:
            await cancel.async_wait(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
"""The shared real clock, the default everywhere."""

_waits = [True]


def waits_enabled() -> bool:
    """False while ``bounceback.testing.set_testing(True)`` is in force: then retries do not wait."""
    return _waits[0]


def _set_waits(enabled: bool) -> None:
    _waits[0] = enabled


def to_seconds(value: object, name: str, *, allow_none: bool = False, allow_zero: bool = True) -> float:
    """Normalise a duration given as seconds or ``timedelta`` to float seconds, or raise ConfigError.

    >>> to_seconds(timedelta(milliseconds=250), "initial")
    0.25
    """
    if value is None and allow_none:
        return math.inf
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value, name)
    else:
        raise ConfigError(name, value, "a number of seconds or a datetime.timedelta")
    lowest = "0" if allow_zero else "0 (exclusive)"
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(name, value, f"a finite number of seconds >= {lowest}")
    return seconds


_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|sec|s|min|m|h|d)?\s*$")


def parse_duration(text: str, name: str = "duration") -> float:
    """Parse ``250ms``, ``2s``, ``1.5m``, ``1h``, ``1d`` or bare seconds (``30``) into seconds.

    >>> parse_duration("250ms"), parse_duration("5m"), parse_duration("2")
    (0.25, 300.0, 2.0)
    """
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(name, text, "a duration such as 250ms, 2s, 5m, 1h or a number of seconds")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds):
        raise ConfigError(name, text, "a finite duration")
    return seconds
