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
import time
import weakref
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.errors import ConfigError, StoreError

__all__ = [
    "LeaseKeeper",
    "MemorySharedLimits",
    "SharedBucket",
    "SharedSlots",
    "StoreGuard",
    "bucket_reserve",
    "bucket_tokens",
    "unavailable_choice",
]

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

    def tokens(self, key: str, rate: float, burst: int) -> float:
        """Tokens in ``key``'s bucket now (negative while waiting calls hold reservations), read without
        taking one: what the fleet has left, for displays. A bucket nobody has used is full (``burst``)."""


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


def bucket_tokens(tokens: float | None, stamp: float | None, now: float, rate: float, burst: int) -> float:
    """The tokens a stored bucket holds at ``now`` (the refill of :func:`bucket_reserve`, nothing taken).

    >>> bucket_tokens(0.0, 100.0, 100.5, rate=2, burst=5)
    1.0
    >>> bucket_tokens(None, None, 100.0, rate=2, burst=5)
    5.0
    """
    if tokens is None or stamp is None:
        return float(burst)
    return min(float(burst), tokens + max(0.0, now - stamp) * rate)


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

    def tokens(self, key: str, rate: float, burst: int) -> float:
        with self._lock:
            tokens, stamp = self._buckets.get(key, (None, None))
            return bucket_tokens(tokens, stamp, self._clock.wall(), rate, burst)

    def close(self) -> None:
        """Nothing to close (the stores' interface)."""

    def __repr__(self) -> str:
        return f"MemorySharedLimits(keys={len(self._leases) + len(self._buckets)})"


UNAVAILABLE_CHOICES = ("fail-open", "fail-closed")
RECHECK_SECONDS = 1.0
"""Seconds a limit leaves a store that failed alone before it asks it again (no timeout on every call)."""


def unavailable_choice(value: object, field: str = "store_unavailable") -> str:
    """``value`` checked as a ``store.on_unavailable`` choice: ``"fail-open"`` or ``"fail-closed"``."""
    if value not in UNAVAILABLE_CHOICES:
        raise ConfigError(
            field,
            value,
            "'fail-open' (carry on under the local limit) or 'fail-closed' (refuse calls)",
            hint="the store.on_unavailable setting, as for shared breakers",
        )
    return str(value)


class StoreGuard:
    """What a shared limit does while its store cannot be reached: ``store.on_unavailable``.

    ``fail-open`` (the default) carries on under the process's own limit; ``fail-closed`` refuses calls
    (the fleet's limit cannot be vouched for). After a failure the store is left alone for
    :data:`RECHECK_SECONDS` on the limiter's clock, so a dead store costs one failed round trip per
    interval, not one per call; the next call after that asks it again. The outage is logged once when it
    starts and once when it ends.

    >>> from bounceback.testing import FakeClock
    >>> clock = FakeClock()
    >>> guard = StoreGuard("redis://db", "search", "rate limit", "fail-closed", clock)
    >>> guard.failed(OSError("refused")); guard.usable(), round(guard.wait(), 3)
    (False, 1.0)
    >>> clock.advance(1.0); guard.usable()
    True
    """

    __slots__ = ("_clock", "_down_until", "_lock", "failures", "kind", "mode", "name", "recheck", "store")

    def __init__(
        self,
        store: str,
        name: str,
        kind: str,
        mode: object,
        clock: Clock,
        *,
        recheck: float = RECHECK_SECONDS,
    ) -> None:
        self.store = store
        self.name = name
        self.kind = kind
        self.mode = unavailable_choice(mode)
        self.recheck = recheck
        self.failures = 0
        """Store operations that failed since creation."""
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until: float | None = None

    @property
    def fail_closed(self) -> bool:
        """True when calls are refused while the store is away."""
        return self.mode == "fail-closed"

    @property
    def unavailable(self) -> bool:
        """True from a failure until the store answers again."""
        return self._down_until is not None

    def usable(self) -> bool:
        """True when the store should be asked: it answered last time, or its recheck time has come."""
        until = self._down_until
        return until is None or self._clock.monotonic() >= until

    def wait(self) -> float:
        """Seconds until the store is asked again (0.0 when it may be asked now)."""
        until = self._down_until
        return 0.0 if until is None else max(0.0, until - self._clock.monotonic())

    def failed(self, exc: BaseException) -> None:
        """Note a failed store operation: leave the store alone for ``recheck`` seconds."""
        with self._lock:
            first = self._down_until is None
            self._down_until = self._clock.monotonic() + self.recheck
            self.failures += 1
        if first:
            then = "refusing calls" if self.fail_closed else "under this process's own limit"
            _log.warning(
                "%s %r: shared store %s unavailable (%s); %s until it answers (store.on_unavailable=%s)",
                self.kind, self.name, self.store, exc, then, self.mode,
            )  # fmt: skip

    def answered(self) -> None:
        """Note a store operation that worked: the outage, if any, is over."""
        if self._down_until is None:
            return  # the common case: no lock
        with self._lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            _log.warning("%s %r: shared store %s answers again", self.kind, self.name, self.store)


class LeaseKeeper:
    """The leases one limiter holds, renewed by a daemon thread every third of a lease while any is held.

    The thread is started on the first lease and ends after a whole quiet interval with none held (so a
    process making a call now and then does not keep a thread for nothing). A renewal that finds fewer
    live leases than it holds is logged: those calls ran past their lease (the process stalled longer
    than a lease) and the fleet may briefly have had more in flight than the limit.

    The same thread gives back leases handed to it with :meth:`give_back_later`: a release on an event
    loop's thread must not wait for the store's round trip.
    """

    __slots__ = (
        "__weakref__",
        "_held",
        "_lock",
        "_pid",
        "_returns",
        "_thread",
        "given_back",
        "key",
        "lease",
        "lost",
        "slots",
        "wake",
    )

    def __init__(self, slots: SharedSlots, key: str, lease: float) -> None:
        self.slots = slots
        self.key = key
        self.lease = lease
        self.lost = 0
        """Leases found expired at a renewal since creation."""
        self.given_back = 0
        """Leases given back by the thread (handed over with :meth:`give_back_later`) since creation."""
        self._held: list[str] = []
        self._returns: list[str] = []
        self._lock = threading.Lock()
        self.wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def _start_locked(self) -> None:
        if self._pid != os.getpid():
            # A forked child: the parent's leases and renewing thread stay the parent's.
            self._held, self._returns, self._thread, self._pid = [], [], None, os.getpid()
        if self._thread is None:
            self._thread = threading.Thread(
                target=_renew_loop, args=(weakref.ref(self),), name=f"bounceback-lease-{self.key}"
            )
            self._thread.daemon = True
            self._thread.start()

    def add(self, holder: str) -> None:
        """Note a lease just taken; start the renewing thread if none runs."""
        with self._lock:
            self._start_locked()
            self._held.append(holder)

    def pop(self) -> str | None:
        """Forget one held lease and return it (leases of one limiter are interchangeable)."""
        with self._lock:
            return self._held.pop() if self._held else None

    def give_back_later(self, holder: str) -> None:
        """Have the thread give ``holder``'s lease back to the store (at once, without waiting for it)."""
        with self._lock:
            self._start_locked()
            self._returns.append(holder)
        self.wake.set()

    @property
    def held(self) -> int:
        """Leases this process holds now."""
        return len(self._held)

    @property
    def returning(self) -> int:
        """Leases handed to the thread and not given back yet."""
        return len(self._returns)

    def give_back_now(self) -> int:
        """Give back every lease handed over with :meth:`give_back_later` (what the thread does when woken);
        returns how many. A store that fails leaves them to expire."""
        with self._lock:
            returns, self._returns = self._returns, []
        for holder in returns:
            try:
                self.slots.give_back(self.key, holder)
            except StoreError as exc:  # the lease runs out by itself
                _log.warning("concurrency limit %r: could not give back a lease (%s)", self.key, exc)
            self.given_back += 1
        return len(returns)

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
        """Lock the list: end the thread when nothing is held or to give back (True)."""
        with self._lock:
            if not self._held and not self._returns:
                self._thread = None
                return True
            return False


def _renew_loop(ref: weakref.ReferenceType[LeaseKeeper]) -> None:
    # A weak reference: a dropped limiter takes its thread with it at the next wake-up. The thread's own
    # waits are real time: leases expire on the store's wall clock whatever clock the limiter reads.
    keeper = ref()
    if keeper is None:
        return
    interval = keeper.lease / 3
    wake = keeper.wake
    del keeper
    due = time.monotonic() + interval
    while True:
        wake.wait(max(0.0, due - time.monotonic()))
        wake.clear()  # before the hand-overs are read: one made after this wakes the next wait
        keeper = ref()
        if keeper is None:
            return
        keeper.give_back_now()  # every time: a hand-over whose wake-up the clear() above swallowed too
        if time.monotonic() >= due:
            due = time.monotonic() + interval
            if keeper.quiet_exit():
                return
            try:
                keeper.renew_now()
            except Exception:  # a store that fails now may work at the next interval; the lease has slack
                _log.warning("concurrency limit %r: could not renew leases", keeper.key, exc_info=True)
        del keeper
