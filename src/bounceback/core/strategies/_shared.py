"""The ports a limit shares through a store (SQLite for one machine, Redis for a fleet), and the lease keeper.

A **shared concurrency limit** is a set of leases per operation: a call takes one before it runs (refused
when ``limit`` live leases exist), gives it back when it ends, and renews it while it runs. A process that
dies without giving its leases back (SIGKILL, a lost machine) frees them when they expire, ``lease``
seconds after their last renewal. Taking a lease is one atomic store operation (a Lua script, one SQLite
transaction), so the fleet never has more than ``limit`` in flight.

A **shared rate limit** is one token bucket per operation in the store; a call reserves a token in one
round trip, with the same rules as the local :class:`~bounceback.core.strategies._rate.RateLimiter`.

The adapters live in ``bounceback.stores`` (``SqliteSharedLimits``, ``RedisSharedLimits``);
:class:`MemorySharedLimits` here is the reference the adapters are tested against, shared by the limiters
of one process.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from bounceback.core._time import SYSTEM_CLOCK, Clock

__all__ = ["LeaseKeeper", "MemorySharedLimits", "SharedBucket", "SharedSlots", "bucket_reserve"]

_log = logging.getLogger("bounceback.limits")
EPSILON = 1e-9  # float slack: a caller who waits exactly ``retry_after`` must find its token


@runtime_checkable
class SharedSlots(Protocol):
    """Leases on a limited number of slots per key, held in a store that several processes see."""

    name: str

    def take(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """Atomically: drop expired leases of ``key``; add ``holder``'s lease (``lease`` seconds) if fewer
        than ``limit`` remain. True when taken."""

    def renew(self, key: str, holders: Sequence[str], lease: float) -> int:
        """Push the expiry of ``holders``' live leases ``lease`` seconds ahead; returns how many were live
        (a lease that expired meanwhile is not brought back: its slot may be someone else's now)."""

    def give_back(self, key: str, holder: str) -> None:
        """Drop ``holder``'s lease (nothing when it has expired already)."""

    def holders(self, key: str) -> int:
        """Live leases of ``key`` now (for displays)."""


@runtime_checkable
class SharedBucket(Protocol):
    """Token buckets per key, held in a store that several processes see."""

    name: str

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> tuple[bool, float]:
        """Atomically take a token, or reserve the next one when it is at most ``max_wait`` seconds away.

        ``(True, 0.0)``: taken now; ``(True, wait)``: reserved, the caller waits ``wait`` seconds;
        ``(False, wait)``: refused, a token is ``wait`` seconds away (nothing was taken)."""


def bucket_reserve(
    tokens: float | None, stamp: float | None, now: float, rate: float, burst: int, max_wait: float
) -> tuple[bool, float, float, float]:
    """The token-bucket step every store runs: ``(taken, wait, tokens, stamp)`` to store back.

    ``stamp`` never goes back: a process whose clock lags cannot mint tokens another has already spent.

    >>> bucket_reserve(None, None, 100.0, rate=10, burst=2, max_wait=0)
    (True, 0.0, 1.0, 100.0)
    >>> bucket_reserve(0.0, 100.0, 100.0, rate=10, burst=2, max_wait=0)
    (False, 0.1, 0.0, 100.0)
    """
    if tokens is None or stamp is None:
        tokens, stamp = float(burst), now
    if now > stamp:
        tokens, stamp = min(float(burst), tokens + (now - stamp) * rate), now
    left = tokens - 1.0
    if left >= -EPSILON:
        return True, 0.0, max(left, 0.0), stamp
    wait = -left / rate
    if wait > max_wait:
        return False, wait, tokens, stamp
    return True, wait, left, stamp


class MemorySharedLimits:
    """Shared limits of one process, in memory: the reference for the store adapters.

    >>> from bounceback.testing import FakeClock
    >>> clock = FakeClock()
    >>> limits = MemorySharedLimits(clock=clock)
    >>> limits.take("db", 1, "a", lease=5.0), limits.take("db", 1, "b", lease=5.0)
    (True, False)
    >>> clock.advance(5.0)        # "a" died without giving back: its lease runs out
    >>> limits.take("db", 1, "b", lease=5.0)
    True
    """

    name = "memory"

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SYSTEM_CLOCK
        self._lock = threading.Lock()
        self._leases: dict[str, dict[str, float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}

    def _live(self, key: str, now: float) -> dict[str, float]:
        leases = self._leases.setdefault(key, {})
        for holder in [h for h, expires in leases.items() if expires <= now]:
            del leases[holder]
        return leases

    def take(self, key: str, limit: int, holder: str, lease: float) -> bool:
        with self._lock:
            now = self._clock.wall()
            leases = self._live(key, now)
            if len(leases) >= limit:
                return False
            leases[holder] = now + lease
            return True

    def renew(self, key: str, holders: Sequence[str], lease: float) -> int:
        with self._lock:
            now = self._clock.wall()
            leases = self._live(key, now)
            live = [h for h in holders if h in leases]
            for holder in live:
                leases[holder] = now + lease
            return len(live)

    def give_back(self, key: str, holder: str) -> None:
        with self._lock:
            self._leases.get(key, {}).pop(holder, None)

    def holders(self, key: str) -> int:
        with self._lock:
            return len(self._live(key, self._clock.wall()))

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> tuple[bool, float]:
        with self._lock:
            tokens, stamp = self._buckets.get(key, (None, None))
            taken, wait, tokens_after, stamp_after = bucket_reserve(
                tokens, stamp, self._clock.wall(), rate, burst, max_wait
            )
            self._buckets[key] = (tokens_after, stamp_after)
            return taken, wait

    def close(self) -> None:
        """Nothing to close (the stores' interface)."""

    def __repr__(self) -> str:
        return f"MemorySharedLimits(keys={len(self._leases) + len(self._buckets)})"


class LeaseKeeper:
    """The leases one limiter holds, renewed by a daemon thread every third of a lease while any is held.

    The thread is started on the first lease and ends after a whole quiet interval with none held (so a
    process making a call now and then does not keep a thread for nothing). A renewal that finds fewer
    live leases than it holds is logged: those calls ran past their lease (the process stalled longer
    than a lease) and the fleet may briefly have had more in flight than the limit.
    """

    __slots__ = ("__weakref__", "_held", "_lock", "_pid", "_thread", "key", "lease", "lost", "slots", "wake")

    def __init__(self, slots: SharedSlots, key: str, lease: float) -> None:
        self.slots = slots
        self.key = key
        self.lease = lease
        self.lost = 0
        """Leases found expired at a renewal since creation."""
        self._held: list[str] = []
        self._lock = threading.Lock()
        self.wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, holder: str) -> None:
        """Note a lease just taken; start the renewing thread if none runs."""
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's leases and renewing thread stay the parent's.
                self._held, self._thread, self._pid = [], None, os.getpid()
            self._held.append(holder)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_renew_loop, args=(weakref.ref(self),), name=f"bounceback-lease-{self.key}"
                )
                self._thread.daemon = True
                self._thread.start()

    def pop(self) -> str | None:
        """Forget one held lease and return it (leases of one limiter are interchangeable)."""
        with self._lock:
            return self._held.pop() if self._held else None

    @property
    def held(self) -> int:
        """Leases this process holds now."""
        return len(self._held)

    def renew_now(self) -> int:
        """Renew every held lease once (what the thread does every ``lease / 3`` seconds); returns how
        many were live."""
        with self._lock:
            holders = list(self._held)
        if not holders:
            return 0
        live = self.slots.renew(self.key, holders, self.lease)
        if live < len(holders):
            self.lost += len(holders) - live
            _log.warning(
                "concurrency limit %r: %d lease(s) expired before renewal (a stall longer than %gs); "
                "raise concurrency.lease",
                self.key,
                len(holders) - live,
                self.lease,
            )
        return live

    def quiet_exit(self) -> bool:
        """Lock the list: end the thread when nothing is held (True)."""
        with self._lock:
            if not self._held:
                self._thread = None
                return True
            return False


def _renew_loop(ref: weakref.ReferenceType[LeaseKeeper]) -> None:
    # A weak reference: a dropped limiter takes its thread with it at the next wake-up.
    keeper = ref()
    if keeper is None:
        return
    interval = keeper.lease / 3
    wake = keeper.wake
    del keeper
    while True:
        wake.wait(interval)
        keeper = ref()
        if keeper is None or keeper.quiet_exit():
            return
        try:
            keeper.renew_now()
        except Exception:  # a store that fails now may work at the next interval; the lease has slack
            _log.warning("concurrency limit %r: could not renew leases", keeper.key, exc_info=True)
        del keeper
