"""Virtual time for the simulator: a clock the event loop sets, which real breakers and budgets read."""

from __future__ import annotations

from bounceback.core._time import CancelToken

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock whose time is whatever the simulation says it is; it never sleeps.

    The event loop moves it to each event's time before any component reads it, so breakers and retry
    budgets built with ``clock=`` see simulated seconds. Waiting is the simulation's job (it schedules the
    next attempt), so :meth:`sleep` refuses rather than silently distorting time.

    >>> clock = VirtualClock()
    >>> clock.now = 12.5
    >>> clock.monotonic(), clock.wall() - clock.wall_start
    (12.5, 12.5)
    """

    __slots__ = ("now", "wall_start")

    def __init__(self, start: float = 0.0, wall_start: float = 1_800_000_000.0) -> None:
        self.now = float(start)
        self.wall_start = wall_start

    def monotonic(self) -> float:
        """The simulated time in seconds."""
        return self.now

    def wall(self) -> float:
        """The simulated time as epoch seconds (``wall_start`` at time zero)."""
        return self.wall_start + self.now

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:  # noqa: ARG002
        """Refuse: inside a simulation, waits are scheduled as events, never slept."""
        raise RuntimeError(
            f"VirtualClock.sleep({seconds!r}) called: the simulator schedules waits as events; "
            "a component that sleeps cannot be simulated"
        )

    async def async_sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Refuse, as :meth:`sleep`."""
        self.sleep(seconds, cancel)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now!r})"
