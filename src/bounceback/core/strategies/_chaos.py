"""Fault injection (chaos) for game days: injected errors, latency and results at a configured rate.

Off by default, and off unless switched on explicitly: a :class:`FaultInjector` does nothing until
``enabled=True`` is given in code or ``chaos.enabled`` is set for the operation. While it is on it says so:
a warning in the ``bounceback.chaos`` log when it is switched on, a :class:`~bounceback.events.FaultInjected` event
for every fault, and a line in ``bounceback status`` (from :func:`active_injectors`).

It wraps the function itself, inside a Policy (``@policy`` above ``@chaos``), so injected faults meet the
breaker, the retry and the limiters exactly as real ones would; the order is documented in docs/chaos.md.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from bounceback.core._events import EventBus, FaultInjected, default_bus
from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.settings._layers import DEFAULTS
from bounceback.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["FaultInjector", "InjectedFault", "active_injectors"]

_log = logging.getLogger("bounceback.chaos")
_NO_RESULT: Any = object()
_live: weakref.WeakSet[FaultInjector] = weakref.WeakSet()
_live_lock = threading.Lock()


class InjectedFault(ConnectionResetError):
    """The default injected error: a connection reset (classified transient), marked as injected so logs
    and tests can tell it from a real one."""


class _InjectedTimeout(TimeoutError):
    """An injected timeout (classified transient)."""


class _InjectedThrottle(ConnectionRefusedError):
    """An injected refusal, standing for a dependency that turns calls away."""


_ERRORS: dict[str, Callable[[str], BaseException]] = {
    "connection": lambda op: InjectedFault(f"{op}: connection reset (injected by chaos)"),
    "timeout": lambda op: _InjectedTimeout(f"{op}: timed out (injected by chaos)"),
    "throttled": lambda op: _InjectedThrottle(f"{op}: refused (injected by chaos)"),
}


def _rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(name, value, "a fraction of calls from 0 to 1", hint="0.1 acts on one call in ten")
    return float(value)


def active_injectors() -> list[FaultInjector]:
    """Every fault injector in this process that is switched on now (for status displays)."""
    with _live_lock:
        found = list(_live)
    return sorted((i for i in found if i.enabled), key=lambda i: i.operation)


class FaultInjector:
    """Injects faults into one operation's calls at configured rates; does nothing unless enabled.

    ``error_rate`` of the calls raise ``error`` (an exception, an exception class, a function of the
    operation name returning one, or one of ``"connection"``, ``"timeout"``, ``"throttled"``); ``latency_rate`` of them are delayed
    ``latency`` seconds first (on the clock); ``result_rate`` of them return ``result`` without running.
    With ``settings=`` (a SettingsSource), the ``chaos.*`` values of ``operation`` are followed live, so
    a game day is switched on and off with ``bounceback settings set chaos.enabled yes --op NAME``.

    >>> from bounceback.testing import FakeClock
    >>> chaos = FaultInjector("pricing", enabled=True, error_rate=1.0, rng=random.Random(1))
    >>> @chaos
    ... def price():
    ...     return 42
    >>> try:
    ...     price()
    ... except InjectedFault as exc:
    ...     print(exc)
    pricing: connection reset (injected by chaos)
    >>> chaos.enabled = False
    >>> price()
    42
    """

    __slots__ = (
        "__weakref__",
        "_bus",
        "_clock",
        "_enabled",
        "_error",
        "_rng",
        "_unsubscribe",
        "error_rate",
        "injected",
        "latency",
        "latency_rate",
        "operation",
        "result",
        "result_rate",
    )

    def __init__(
        self,
        operation: str,
        *,
        enabled: bool = False,
        error_rate: float = 0.0,
        error: Any = "connection",
        latency_rate: float = 0.0,
        latency: float | Any = 1.0,
        result_rate: float = 0.0,
        result: Any = None,
        settings: Any = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        bus: EventBus | None = None,
    ) -> None:
        if not isinstance(operation, str) or not operation.strip():
            raise ConfigError("operation", operation, "a non-empty name such as 'pricing'")
        self.operation = operation
        self._clock = clock or SYSTEM_CLOCK
        self._rng = rng or random.Random()
        self._bus = bus or default_bus
        self._enabled = False
        self.injected = 0
        """Faults injected since creation."""
        self._unsubscribe: Callable[[], None] | None = None
        self._configure(enabled, error_rate, error, latency_rate, latency, result_rate, result)
        with _live_lock:
            _live.add(self)
        if settings is not None:
            ref = weakref.ref(self)

            def on_change() -> None:
                injector = ref()
                if injector is not None:
                    injector.reload(settings)

            self.reload(settings)
            self._unsubscribe = settings.subscribe(on_change)

    def _configure(
        self,
        enabled: bool,
        error_rate: float,
        error: Any,
        latency_rate: float,
        latency: Any,
        result_rate: float,
        result: Any,
    ) -> None:
        if isinstance(error, str):
            if error not in _ERRORS:
                raise ConfigError("error", error, "one of " + ", ".join(_ERRORS), hint="or an exception")
        elif not (isinstance(error, BaseException) or callable(error)):
            raise ConfigError("error", error, "an exception, a function returning one, or a name")
        rates = (_rate(error_rate, "error_rate"), _rate(latency_rate, "latency_rate"))
        result_share = _rate(result_rate, "result_rate")
        seconds = to_seconds(latency, "latency")
        self.error_rate, self.latency_rate = rates
        self.result_rate = result_share
        self.latency = seconds
        self.result = result
        self._error = error
        self.enabled = bool(enabled)

    @property
    def enabled(self) -> bool:
        """Whether faults are injected now; switching it on logs a warning (nobody should miss a game day)."""
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        if on and not self._enabled:
            _log.warning(
                "fault injection is ON for %r: errors %.0f%%, latency %.0f%% (%gs), results %.0f%%",
                self.operation,
                self.error_rate * 100,
                self.latency_rate * 100,
                self.latency,
                self.result_rate * 100,
            )
        elif self._enabled and not on:
            _log.warning("fault injection is off for %r", self.operation)
        self._enabled = bool(on)

    def reload(self, settings: Any) -> None:
        """Read the ``chaos.*`` settings of the operation now (done by itself on every settings change)."""
        values = {**DEFAULTS, **settings.effective(self.operation)}
        self._configure(
            values["chaos.enabled"],
            values["chaos.error_rate"],
            values["chaos.error"],
            values["chaos.latency_rate"],
            values["chaos.latency"],
            self.result_rate,
            self.result,
        )

    def close(self) -> None:
        """Stop following settings changes."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def describe(self) -> str:
        """One line for status displays."""
        parts = []
        if self.error_rate:
            name = self._error if isinstance(self._error, str) else getattr(self._error, "__name__", "error")
            parts.append(f"{self.error_rate:.0%} errors ({name})")
        if self.latency_rate:
            parts.append(f"{self.latency_rate:.0%} +{self.latency:g}s latency")
        if self.result_rate:
            parts.append(f"{self.result_rate:.0%} results {self.result!r}")
        state = "ON" if self._enabled else "off"
        return f"chaos {state} for {self.operation}: " + (", ".join(parts) or "no faults configured")

    # -- acting on a call ----------------------------------------------------------------------------

    def _make_error(self) -> BaseException:
        error = self._error
        if isinstance(error, str):
            return _ERRORS[error](self.operation)
        if isinstance(error, BaseException):
            return error
        # An exception class, or any function of the operation name: both are called with a message.
        made = error(f"{self.operation} (injected by chaos)" if isinstance(error, type) else self.operation)
        if not isinstance(made, BaseException):
            raise ConfigError("error", error, "a function that returns an exception")
        return made

    def _tell(self, fault: str, detail: str) -> None:
        self.injected += 1
        if self._bus.listening:
            self._bus.emit(FaultInjected(self.operation, self._clock.wall(), fault, detail))

    def _draw(self) -> tuple[float, BaseException | None, Any]:
        """Decide the faults of one call: (delay, error or None, result or _NO_RESULT)."""
        rng = self._rng
        delay = self.latency if self.latency_rate and rng.random() < self.latency_rate else 0.0
        if delay:
            self._tell("latency", f"{delay:g}s")
        if self.error_rate and rng.random() < self.error_rate:
            error = self._make_error()
            self._tell("error", type(error).__name__)
            return delay, error, _NO_RESULT
        if self.result_rate and rng.random() < self.result_rate:
            self._tell("result", repr(self.result))
            return delay, None, self.result
        return delay, None, _NO_RESULT

    def __call__(self, fn: F) -> F:
        """Wrap ``fn`` (sync or ``async def``): while enabled, its calls meet the configured faults."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if self._enabled:
                    delay, error, result = self._draw()
                    if delay:
                        await self._clock.async_sleep(delay)
                    if error is not None:
                        raise error
                    if result is not _NO_RESULT:
                        return result
                return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._enabled:
                delay, error, result = self._draw()
                if delay:
                    self._clock.sleep(delay)
                if error is not None:
                    raise error
                if result is not _NO_RESULT:
                    return result
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    def __repr__(self) -> str:
        return f"FaultInjector({self.operation!r}, enabled={self._enabled})"
