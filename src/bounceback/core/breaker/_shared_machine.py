"""The state machine of a breaker given a store (shared with other processes, or one that can fail).

:class:`SharedMachine` is the :class:`~._machine.StateMachine` over a :class:`~._link.StoreLink` instead of
the breaker's own memory store, with what sharing and failing stores need besides: the state other
processes wrote is adopted at most every ``sync_seconds`` (at once when the store pushes changes), a store
that counts successes itself is handed the fast path's successes, and while the store is away the breaker
runs on local state (failing open or closed) and looks for the store every ``store_retry_seconds``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from bounceback.core._events import EventBus, StoreRecovered, StoreUnavailable
from bounceback.core.breaker._config import BreakerConfig
from bounceback.core.breaker._core import BreakerState
from bounceback.core.breaker._link import StoreLink
from bounceback.core.breaker._machine import Publish, StateMachine
from bounceback.core.breaker._store import BreakerStore, SharedState
from bounceback.errors import CircuitOpenError, StoreError

__all__ = ["SharedMachine"]

_C = BreakerState.CLOSED
_O = BreakerState.OPEN


class SharedMachine(StateMachine):
    """A breaker's state machine on a store given to it; see the module docstring."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        cfg: BreakerConfig,
        now: Callable[[], float],
        wall: Callable[[], float],
        bus: EventBus,
        rng: random.Random,
        health_check: Callable[[], Any] | None,
        timers: bool,
        publish: Publish,
        store: BreakerStore,
        /,
    ) -> None:
        super().__init__(name, cfg, now, wall, bus, rng, health_check, timers, publish)
        link = self._link = StoreLink(
            store, self._local_state, self._store_away, now, cfg.store_retry_seconds
        )
        self._io = link
        self.shared = link.shared
        counter = link.success_counter(name, self._spec)
        if counter is not None:
            # The store counts this breaker's fast-path successes itself (a batching store): a success
            # costs a bump of its counter, and a look at the clock for the next sync of the state.
            self._bump = counter
            self.count_success = self._count_shared
            self.success_tally = None
        # A store that hears of changes made elsewhere (a push) tells the breaker at once, so the next
        # admission sees a fleet's force-open without any check on the success path.
        link.on_state_change(name, self.changed_elsewhere)
        with self._lock:
            self._reflags()
        stored = link.load(name)
        if stored is not None and stored.version != self._epoch:
            with self._lock:
                change = self._adopt(stored)
            self._after(change)

    @property
    def store(self) -> BreakerStore:
        """The store given to the breaker."""
        return self._link.store  # type: ignore[union-attr]  # set in __init__

    def admit_closed(self, acquire: Callable[[], Any]) -> Any:
        """Admit a call while closed when it needs a permit: first look at the state written elsewhere when
        due, and refuse while the store is away if the breaker fails closed."""
        now = self._now()
        if self.shared and now >= self.next_sync:
            self.sync(now)
            if self._state is not _C:
                return acquire()
        link = self._link
        if link is not None and link.degraded and self._cfg.store_unavailable == "fail-closed":
            self._reconnect()
            if link.degraded:
                wait = max(0.0, link.retry_at - now)
                at = self._wall() + wait
                raise self.refuse(
                    CircuitOpenError(self.name, "store_unavailable", at, wait), "store_unavailable", at
                )
        return super().admit_closed(acquire)

    def record(self, outcome: int, epoch: int) -> None:
        """Record one outcome through the store; trip the breaker when the window says so."""
        link = self._link
        assert link is not None
        # A store of the user's may do I/O: no lock around it.
        if link.degraded:
            self._reconnect()
        with self._lock:
            successes = self._tally.take()
            if epoch < 0:
                epoch = self._epoch
        counts, stored = link.record(self.name, self._spec, successes, outcome, self._store_now())
        with self._lock:
            change = self._decide(counts, stored, epoch)
        self._after(change)

    def _count_shared(self) -> None:
        """``count_success`` on a store that counts successes itself: bump its counter; sync when due."""
        self._bump()  # type: ignore[misc]  # set together with this method (__init__)
        now = self._now()
        if now >= self.next_sync:
            self.sync(now)

    def changed_elsewhere(self, stored: SharedState) -> None:
        """A state written by another process reached the store (its push feed or flusher thread): adopt it
        now if it is newer than ours, so the next call is admitted or refused by it."""
        link = self._link
        if link is None or link.degraded:
            return  # on local state while the store is away: the reconnection adopts the store's state
        with self._lock:
            change = self._adopt(stored) if stored.version > self._epoch else None
        self._after(change)

    def sync(self, now: float) -> None:
        """Shared stores, at most every ``sync_seconds``: adopt a state written elsewhere."""
        link = self._link
        if link is None:
            return
        self.next_sync = now + self._cfg.sync_seconds
        if link.degraded:
            self._reconnect()
            return
        stored = link.load(self.name)
        if stored is None or stored.version == self._epoch:
            return
        with self._lock:
            change = self._adopt(stored) if stored.version != self._epoch else None
        self._after(change)

    def _local_state(self) -> SharedState:
        """The state to carry on with locally (the store link asks when its store fails)."""
        store_now = self._store_now()
        until = None
        if self._state is _O:
            until = store_now + max(0.0, self._open_until - self._now())
        return SharedState(self._state.value, self._epoch, store_now, until, self._reopens, "local")

    def _store_away(self, error: StoreError) -> None:
        """The store link fell back to local state: fail open or closed from now on, and say so once."""
        with self._lock:
            if self._bump is not None:
                # Successes made on local state stay local, like the failures: the fleet's window gets
                # neither (a store's counter would send the successes alone once it is back).
                self._bump = self._tally.bump
            self._reflags()
        if self._bus.listening and self._link is not None:
            self._bus.emit(StoreUnavailable(self.name, self._wall(), self._link.name, str(error)))

    def _reconnect(self) -> None:
        """While the store is away, and at most every ``store_retry_seconds``: is it back?"""
        link = self._link
        stored = link.reconnect(self.name) if link is not None else None
        if stored is None or link is None:
            return
        with self._lock:
            if self._bump is not None:
                self._bump = link.success_counter(self.name, self._spec) or self._tally.bump
            change = self._adopt(stored) if stored.version != self._epoch else None
            self._reflags()
        if self._bus.listening:
            self._bus.emit(StoreRecovered(self.name, self._wall(), link.name))
        self._after(change)
