"""The public test kit: a fake clock, a recording event sink, and a switch that turns waits off.

>>> from bounceback.testing import FakeClock
>>> clock = FakeClock()
>>> clock.sleep(1.5)
>>> clock.monotonic(), clock.sleeps
(1.5, [1.5])
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from bounceback.core._events import Event, EventBus, default_bus
from bounceback.core._time import CancelToken, _set_waits, waits_enabled

__all__ = ["FakeClock", "RecordingSink", "no_waits", "set_testing"]

E = TypeVar("E", bound=Event)


class FakeClock:
    """Virtual time: sleeping advances it at once and is recorded in ``sleeps``.

    ``start`` is the initial monotonic reading and ``wall_start`` the epoch time it corresponds to.
    ``on_sleep`` (optional) is called with each requested delay before time advances, which lets a test
    act "during" a wait, for example cancel a token.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._wall_offset = wall_start - start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def monotonic(self) -> float:
        """The virtual monotonic time."""
        return self._now

    def wall(self) -> float:
        """The virtual wall time (moves with the monotonic time)."""
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` without recording a sleep."""
        if seconds < 0:
            raise ValueError(f"advance: got {seconds!r}; expected seconds >= 0 (time never goes backwards)")
        with self._lock:
            self._now += seconds

    def jump_wall(self, seconds: float) -> None:
        """Change the wall clock only (as when a person sets the system time); monotonic time is untouched."""
        self._wall_offset += seconds

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Record the sleep and advance virtual time, unless ``cancel`` has fired."""
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        if cancel is not None and cancel.is_cancelled:
            return
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def async_sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """As :meth:`sleep`, and yield to the event loop once so other tasks run."""
        self.sleep(seconds, cancel)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleeps={len(self.sleeps)})"


class RecordingSink:
    """Subscribes to an event bus and keeps every event, for assertions.

    >>> from bounceback.core._events import EventBus
    >>> with RecordingSink(EventBus()) as sink:
    ...     pass
    >>> sink.events
    []
    """

    def __init__(self, bus: EventBus | None = None) -> None:
        self.bus = bus or default_bus
        self.events: list[Event] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.start()

    def start(self) -> None:
        """Begin recording (done by the constructor)."""
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(self.events.append)

    def stop(self) -> None:
        """Stop recording."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def of(self, kind: type[E]) -> list[E]:
        """The recorded events of one type."""
        return [e for e in self.events if isinstance(e, kind)]

    def __enter__(self) -> RecordingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def set_testing(enabled: bool) -> None:
    """Turn every retry wait off (True) or back on (False), for a program's own test suite.

    Attempts still run and are counted; only the waits between them are skipped.
    """
    _set_waits(not enabled)


@contextmanager
def no_waits() -> Iterator[None]:
    """``with no_waits():`` turns waits off for the block and restores the previous state after."""
    before = waits_enabled()
    _set_waits(False)
    try:
        yield
    finally:
        _set_waits(before)
