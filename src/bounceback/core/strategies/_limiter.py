"""A concurrency limiter (bulkhead): at most ``max_in_flight`` calls run at once, ``max_waiting`` more wait.

A call that finds every slot taken joins a first-in, first-out queue when there is room in it, and waits at
most ``queue_timeout`` seconds for a slot; a call that finds the queue full too, or whose wait runs out, is
refused with :class:`~bounceback.errors.ConcurrencyLimitExceeded` (classified throttled) without running.
A slot freed while calls wait goes straight to the oldest of them, so a newcomer cannot jump the queue.

Threads and asyncio tasks share one limiter: a thread waits on an event, a task on a future of its own loop.
The queue wait is a wait for another caller to finish, not a timer of ours, so it is measured by the
threading / event-loop primitives that do the waiting (a FakeClock has no say in when another thread ends).

With ``shared=`` (a :class:`~bounceback.core.strategies._shared.SharedSlots` store: SQLite for the processes
of one machine, Redis for a fleet) the limit holds across every process: a call takes a local slot, then
a lease in the store, renewed while it runs and freed by expiry if its process dies. A call that finds
the fleet full waits for a lease (polling the store, on the limiter's clock) as long as it could wait
in the local queue. When the store cannot be reached, ``store_unavailable`` (the ``store.on_unavailable``
setting, as for shared breakers) decides: ``fail-open`` carries on under the local limit alone,
``fail-closed`` refuses calls (reason ``"store unavailable"``); the store is asked again a second later.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import math
import os
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from bounceback.core._events import EventBus, LimitRejected, default_bus
from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.strategies._shared import LeaseKeeper, SharedSlots, StoreGuard
from bounceback.errors import ConcurrencyLimitExceeded, ConfigError, StoreError

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["ConcurrencyLimiter"]

T = TypeVar("T")
_log = logging.getLogger("bounceback.limits")
_HOST = socket.gethostname()
_serial = itertools.count(1)
_FIRST_POLL = 0.005  # seconds between polls of a full fleet, doubling up to _LAST_POLL
_LAST_POLL = 0.1


class _Waiter:
    """One queued caller: a thread (``event``) or a task (``future`` on ``loop``)."""

    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self) -> None:
        self.granted = False
        self.event: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.future is not None:
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _in_event_loop() -> bool:
    """True when the calling thread runs an event loop: blocking it would stop the calls that free slots."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _count(value: object, name: str, lowest: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= 1_000_000:
        raise ConfigError(name, value, f"a whole number from {lowest} to 1000000", hint=example)
    return value


class ConcurrencyLimiter:
    """At most ``max_in_flight`` calls at once and ``max_waiting`` queued; thread- and task-safe.

    ``queue_timeout`` bounds a queued call's wait (seconds or ``timedelta``; ``None``: wait as long as it
    takes). Use it as a context manager (``with`` / ``async with``), a decorator, with :meth:`call` /
    :meth:`acall`, or give it to a :class:`~bounceback.Policy` (``limiter=``), which passes it before the
    throttle and the breaker on every attempt.

    >>> limiter = ConcurrencyLimiter(2, max_waiting=0, name="reports")
    >>> with limiter:
    ...     limiter.in_flight
    1
    >>> limiter.acquire(); limiter.acquire()
    >>> try:
    ...     limiter.acquire()
    ... except ConcurrencyLimitExceeded as exc:
    ...     print(exc.reason, exc.limit)
    full 2
    >>> limiter.release(); limiter.release()
    """

    __slots__ = (
        "__weakref__",
        "_bus",
        "_clock",
        "_guard",
        "_in_flight",
        "_keeper",
        "_lock",
        "_waiters",
        "max_in_flight",
        "max_waiting",
        "name",
        "queue_timeout",
        "rejected",
    )

    def __init__(
        self,
        max_in_flight: int,
        *,
        max_waiting: int = 0,
        queue_timeout: float | Any = 1.0,
        name: str = "limiter",
        clock: Clock | None = None,
        bus: EventBus | None = None,
        shared: SharedSlots | None = None,
        lease: float | Any = 10.0,
        store_unavailable: str | None = None,
    ) -> None:
        self.max_in_flight = _count(
            max_in_flight, "max_in_flight", 1, "the calls the dependency can serve at once"
        )
        self.max_waiting = _count(max_waiting, "max_waiting", 0, "0 refuses at once when every slot is taken")
        self.queue_timeout = to_seconds(queue_timeout, "queue_timeout", allow_none=True)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name", name, "a non-empty name such as 'payments-api'")
        self.name = name
        self._clock = clock or SYSTEM_CLOCK
        self._bus = bus or default_bus
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        self.rejected = 0
        """Calls refused since creation (full, or out of queue time)."""
        self._keeper: LeaseKeeper | None = None
        self._guard: StoreGuard | None = None
        if shared is not None:
            if not isinstance(shared, SharedSlots):
                raise ConfigError(
                    "shared", shared, "a shared-slots store such as bounceback.stores.SqliteSharedLimits"
                )
            seconds = to_seconds(lease, "lease")
            if not 0.1 <= seconds <= 315_360_000:
                raise ConfigError(
                    "lease", lease, "seconds from 0.1 up to 3650 days", hint="longer than a stall"
                )
            self._keeper = LeaseKeeper(shared, name, seconds)
            mode = store_unavailable or getattr(shared, "on_unavailable", "fail-open")
            self._guard = StoreGuard(shared.name, name, "concurrency limit", mode, self._clock)

    # -- reading ------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls queued for a slot now."""
        return len(self._waiters)

    def snapshot(self) -> dict[str, Any]:
        """Occupancy for displays: limits, calls in flight and waiting, calls refused so far.

        ``in_flight`` and ``waiting`` are this process's. A shared limiter adds ``fleet_in_flight``: the
        live leases of every process, read from the store (None while the store cannot be reached), of the
        fleet's limit ``max_in_flight``; ``store_unavailable`` is True during an outage.
        """
        with self._lock:
            snap: dict[str, Any] = {
                "name": self.name,
                "in_flight": self._in_flight,
                "max_in_flight": self.max_in_flight,
                "waiting": len(self._waiters),
                "max_waiting": self.max_waiting,
                "rejected": self.rejected,
                "shared": self._keeper.slots.name if self._keeper is not None else None,
            }
        keeper, guard = self._keeper, self._guard
        if keeper is not None and guard is not None:
            fleet: int | None = None
            if guard.usable():
                try:
                    fleet = keeper.slots.holders(keeper.key)
                except StoreError as exc:
                    guard.failed(exc)
                else:
                    guard.answered()
            snap["fleet_in_flight"] = fleet
            snap["store_unavailable"] = guard.unavailable
        return snap

    # -- taking and giving back a slot ---------------------------------------------------------------

    def _refuse(self, reason: str, waited: float) -> ConcurrencyLimitExceeded:
        """Count a refusal (lock held) and build its error; the event goes out after the lock is left."""
        self.rejected += 1
        return ConcurrencyLimitExceeded(self.name, self.max_in_flight, self.max_waiting, reason, waited)

    def _tell(self, exc: ConcurrencyLimitExceeded) -> ConcurrencyLimitExceeded:
        if self._bus.listening:
            self._bus.emit(LimitRejected(self.name, self._clock.wall(), "concurrency", exc.reason, None))
        return exc

    def _enqueue(self) -> tuple[bool, _Waiter | ConcurrencyLimitExceeded | None]:
        """Lock held: (True, None) for a free slot, (False, waiter) to wait, (False, error) to refuse."""
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            return True, None
        if len(self._waiters) >= self.max_waiting or self.queue_timeout == 0:
            return False, self._refuse("full", 0.0)
        waiter = _Waiter()
        self._waiters.append(waiter)
        return False, waiter

    def acquire(self) -> None:
        """Take a slot, waiting in the queue if allowed; raise ConcurrencyLimitExceeded otherwise.

        Called on a thread that runs an event loop (a Policy's async attempt), it never blocks: a call
        that would have to wait is refused, since the calls that would free a slot need that very loop.
        """
        with self._lock:  # the common case inline: a free slot
            free = self._in_flight < self.max_in_flight
            if free:
                self._in_flight += 1
        if not free:
            self._acquire_local()
        if self._keeper is not None:
            self._take_lease(self._keeper)

    def _acquire_local(self) -> None:
        with self._lock:
            if self._in_flight < self.max_in_flight:
                self._in_flight += 1
                return
            waiter: _Waiter | ConcurrencyLimitExceeded | None
            if _in_event_loop():
                waiter = self._refuse("full", 0.0)
            else:
                _, waiter = self._enqueue()
                if isinstance(waiter, _Waiter):
                    waiter.event = threading.Event()
        if isinstance(waiter, ConcurrencyLimitExceeded):
            raise self._tell(waiter)
        if waiter is None or waiter.event is None:
            return  # a slot was free after all
        started = self._clock.monotonic()
        timeout = None if self.queue_timeout == math.inf else self.queue_timeout
        waiter.event.wait(timeout)
        with self._lock:
            if waiter.granted:
                return  # a slot came, perhaps at the very end of the wait: take it
            self._waiters.remove(waiter)
            exc = self._refuse("queue timeout", self._clock.monotonic() - started)
        raise self._tell(exc)

    async def acquire_async(self) -> None:
        """Take a slot, awaiting it in the queue if allowed; raise ConcurrencyLimitExceeded otherwise."""
        with self._lock:  # the common case inline: a free slot
            free = self._in_flight < self.max_in_flight
            if free:
                self._in_flight += 1
        if not free:
            await self._acquire_local_async()
        if self._keeper is not None:
            await self._take_lease_async(self._keeper)

    async def _acquire_local_async(self) -> None:
        with self._lock:
            ok, waiter = self._enqueue()
            if not ok and isinstance(waiter, _Waiter):
                waiter.loop = asyncio.get_running_loop()
                waiter.future = waiter.loop.create_future()
        if ok:
            return
        if isinstance(waiter, ConcurrencyLimitExceeded):
            raise self._tell(waiter)
        if waiter is None or waiter.future is None:
            return
        started = self._clock.monotonic()
        timeout = None if self.queue_timeout == math.inf else self.queue_timeout
        try:
            await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            with self._lock:
                if waiter.granted:
                    return
                self._waiters.remove(waiter)
                exc = self._refuse("queue timeout", self._clock.monotonic() - started)
            raise self._tell(exc) from None
        except BaseException:
            # Cancelled while queued: leave the queue, or pass on a slot that was already handed over.
            with self._lock:
                if waiter.granted:
                    self._release_locked()  # a local slot only: no lease was taken yet
                else:
                    self._waiters.remove(waiter)
            raise

    # -- the fleet's slots (shared=) -----------------------------------------------------------------

    def _may_wait(self) -> bool:
        return self.max_waiting > 0 and self.queue_timeout != 0

    def _fleet_refusal(self, reason: str, waited: float) -> ConcurrencyLimitExceeded:
        with self._lock:
            exc = self._refuse(reason, waited)
        return self._tell(exc)

    def _take_lease(self, keeper: LeaseKeeper) -> None:
        """Holding a local slot: take a lease in the store, polling while the fleet is full and the call
        may wait. Gives the local slot back on refusal; carries on without a lease if the store fails."""
        if not self._store_usable():
            return
        holder = f"{_HOST}:{os.getpid()}:{next(_serial)}"
        started = deadline = None
        delay = _FIRST_POLL
        try:
            while not keeper.slots.take(keeper.key, self.max_in_flight, holder, keeper.lease):
                now = self._clock.monotonic()
                if started is None:
                    if not self._may_wait() or _in_event_loop():
                        raise self._fleet_refusal("full", 0.0)
                    started, deadline = now, now + self.queue_timeout
                elif deadline is not None and now >= deadline:
                    raise self._fleet_refusal("queue timeout", now - started)
                self._clock.sleep(min(delay, deadline - now) if deadline is not None else delay)
                delay = min(delay * 2, _LAST_POLL)
        except StoreError as exc:
            self._store_failed(exc)
            return
        except BaseException:
            self._release_local()
            raise
        self._store_answered()
        keeper.add(holder)

    async def _take_lease_async(self, keeper: LeaseKeeper) -> None:
        """:meth:`_take_lease` for async callers: the store is asked on a worker thread (its round trip
        must not stop the event loop) and polled with the clock's async sleep."""
        if not self._store_usable():
            return
        holder = f"{_HOST}:{os.getpid()}:{next(_serial)}"
        started = deadline = None
        delay = _FIRST_POLL
        take = keeper.slots.take
        try:
            while not await asyncio.to_thread(take, keeper.key, self.max_in_flight, holder, keeper.lease):
                now = self._clock.monotonic()
                if started is None:
                    if not self._may_wait():
                        raise self._fleet_refusal("full", 0.0)
                    started, deadline = now, now + self.queue_timeout
                elif deadline is not None and now >= deadline:
                    raise self._fleet_refusal("queue timeout", now - started)
                await self._clock.async_sleep(min(delay, deadline - now) if deadline is not None else delay)
                delay = min(delay * 2, _LAST_POLL)
        except StoreError as exc:
            self._store_failed(exc)
            return
        except BaseException:
            self._release_local()
            raise
        self._store_answered()
        keeper.add(holder)

    def _store_usable(self) -> bool:
        """Holding a local slot: True to ask the store for a lease; False to go on without one (the
        store is away and the limit fails open). Refuses the call (and frees the slot) when it fails
        closed."""
        guard = self._guard
        if guard is None or guard.usable():
            return True
        if guard.fail_closed:
            self._release_local()
            raise self._fleet_refusal("store unavailable", 0.0)
        return False

    def _store_failed(self, exc: StoreError) -> None:
        """Holding a local slot, the store failed: note the outage; refuse the call when failing closed."""
        guard = self._guard
        assert guard is not None  # only shared limiters ask the store
        guard.failed(exc)
        if guard.fail_closed:
            self._release_local()
            raise self._fleet_refusal("store unavailable", 0.0) from exc

    def _store_answered(self) -> None:
        guard = self._guard
        if guard is not None:
            guard.answered()

    def renew_leases(self) -> int:
        """Renew the fleet leases this limiter holds now (a background thread does it every third of a
        lease); returns how many were still live. 0 without ``shared=``."""
        return self._keeper.renew_now() if self._keeper is not None else 0

    def _release_locked(self) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True  # the slot changes hands: in_flight stays as it is
            waiter.wake()
            return
        if self._in_flight <= 0:
            raise RuntimeError(f"concurrency limiter {self.name!r}: release() without a matching acquire()")
        self._in_flight -= 1

    def release(self) -> None:
        """Give back a slot: to the oldest queued call, or to the pool (and its fleet lease, if shared).

        On an event loop's thread the fleet lease goes back through the lease keeper's thread, so the
        loop never waits for the store's round trip; elsewhere it goes back at once.
        """
        keeper = self._keeper
        if keeper is not None:
            holder = keeper.pop()
            if holder is not None:
                if _in_event_loop():
                    keeper.give_back_later(holder)
                else:
                    try:
                        keeper.slots.give_back(keeper.key, holder)
                    except StoreError as exc:  # the lease runs out by itself
                        _log.warning("concurrency limit %r: could not give back a lease (%s)", self.name, exc)
        with self._lock:
            if not self._waiters and self._in_flight > 0:
                self._in_flight -= 1  # the common case inline: nobody queued
                return
            self._release_locked()

    def _release_local(self) -> None:
        with self._lock:
            self._release_locked()

    # -- the usual forms ------------------------------------------------------------------------------

    def __enter__(self) -> ConcurrencyLimiter:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> ConcurrencyLimiter:
        await self.acquire_async()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` holding a slot."""
        with self:
            return fn(*args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` holding a slot (queued without blocking the loop)."""
        async with self:
            return await fn(*args, **kwargs)

    def __call__(self, fn: F) -> F:
        """Decorate a function (sync or ``async def``) so every call holds a slot."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        acquire, release = self.acquire, self.release  # bound once: no context-manager frames per call

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            acquire()
            try:
                return fn(*args, **kwargs)
            finally:
                release()

        return cast(F, wrapper)

    def __repr__(self) -> str:
        return (
            f"ConcurrencyLimiter({self.name!r}, max_in_flight={self.max_in_flight}, "
            f"max_waiting={self.max_waiting}, in_flight={self._in_flight}, waiting={len(self._waiters)})"
        )
