"""The state machine of a circuit breaker and its link to the store.

Split from ``_breaker.py`` by responsibility: this module owns the states, the allowed transitions, the
one function that applies a transition (:meth:`_BreakerCore._move`), and every call into the store,
including the fall-back to local state when the store cannot be reached.

Locking: ``_lock`` guards the local mirror of the state and the counters. It is held for a few attribute
writes and, on a state change, for the store's compare-and-set (rare). It is never held while user code
runs: events are emitted, and health checks run, after it is released.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from bounceback.core._events import (
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerStateChanged,
    EventBus,
    StoreRecovered,
    StoreUnavailable,
)
from bounceback.core._tally import Tally
from bounceback.core.breaker._config import BreakerConfig
from bounceback.core.breaker._metrics import Transition
from bounceback.core.breaker._states import ALLOWED_TRANSITIONS, AUTOMATIC_TRANSITIONS, BreakerState
from bounceback.core.breaker._store import BreakerStore, MemoryBreakerStore, SharedState, WindowSpec
from bounceback.core.breaker._window import WindowCounts
from bounceback.core.classify._rules import Classifier
from bounceback.errors import StoreError

__all__ = ["ALLOWED_TRANSITIONS", "AUTOMATIC_TRANSITIONS", "BreakerState"]


_C = BreakerState.CLOSED
_O = BreakerState.OPEN
_H = BreakerState.HALF_OPEN
_F = BreakerState.FORCED_OPEN
_D = BreakerState.DISABLED

_EVENTS: dict[BreakerState, type[BreakerStateChanged]] = {
    _C: BreakerClosed,
    _O: BreakerOpened,
    _H: BreakerHalfOpened,
    _F: BreakerOpened,
    _D: BreakerStateChanged,
}

Change = tuple[BreakerState, BreakerStateChanged | None]
"""What a transition hands to :meth:`_BreakerCore._after`: the new state and its event (None when nobody
listens)."""


class _BreakerCore:
    """State, transitions and store access; the public class is ``CircuitBreaker``."""

    # Every slot of the breaker is declared here, so the mixins and CircuitBreaker share one layout.
    __slots__ = (
        "_active",
        "_bus",
        "_cfg",
        "_classifier",
        "_clock",
        "_degraded",
        "_driver",
        "_epoch",
        "_explicit",
        "_health",
        "_health_async",
        "_health_due",
        "_health_stats",
        "_in_flight",
        "_is_failure",
        "_key",
        "_lock",
        "_next_sync",
        "_now",
        "_open_until",
        "_open_until_wall",
        "_opens",
        "_overlay",
        "_permits",
        "_plain",
        "_probes",
        "_real",
        "_refusals",
        "_rejected",
        "_reopens",
        "_rng",
        "_settings",
        "_shared",
        "_since",
        "_since_wall",
        "_spec",
        "_state",
        "_stopping",
        "_store",
        "_store_retry_at",
        "_tally",
        "_timers",
        "_transitions",
        "_unsubscribe",
        "_wake",
        "_wall",
        "_warm",
        "count_success",
        "fast_path",
        "name",
    )

    name: str
    _key: str
    _cfg: BreakerConfig
    _spec: WindowSpec
    _state: BreakerState
    _epoch: int
    fast_path: bool
    count_success: Callable[[], object]
    _tally: Tally
    _plain: bool
    _warm: bool
    _open_until: float
    _open_until_wall: float
    _reopens: int
    _rng: random.Random
    _since: float
    _since_wall: float
    _in_flight: int
    _probes: int
    _rejected: int
    _refusals: Tally
    _opens: int
    _transitions: deque[Transition] | None
    _lock: threading.Lock
    _now: Callable[[], float]
    _wall: Callable[[], float]
    _bus: EventBus
    _store: BreakerStore
    _active: BreakerStore
    _shared: bool
    _degraded: bool
    _store_retry_at: float
    _next_sync: float
    _health_due: float
    _classifier: Classifier
    _is_failure: Callable[[Any], bool] | None

    def _store_now(self) -> float:
        return self._wall() if self._shared else self._now()

    # -- flags -----------------------------------------------------------------------------------------

    def _reflags(self) -> None:
        """Recompute the fast-path flags. Call with the lock held (or before the breaker is shared)."""
        cfg = self._cfg
        plain = (
            cfg.max_in_flight == 0
            and not cfg.timed
            and not self._shared
            and not (self._degraded and cfg.store_unavailable == "fail-closed")
        )
        self._plain = plain
        # Fast only while a success cannot trip the breaker: either the window already holds min_calls
        # (a success then only lowers the rates) or it holds no failure at all.
        self.fast_path = plain and self._state is _C and cfg.window_type == "count" and self._warm

    # -- transitions -----------------------------------------------------------------------------------

    def _move(
        self, new: BreakerState, reason: str, *, clear: bool = False, reopens: int | None = None
    ) -> Change | None:
        """Change the state through the store (compare-and-set). Call with the lock held."""
        old = self._state
        if old is not new and (old, new) not in ALLOWED_TRANSITIONS:  # pragma: no cover - a bug guard
            raise AssertionError(f"breaker {self.name!r}: forbidden transition {old.value} -> {new.value}")
        store_now = self._store_now()
        until = None
        if new is _O:
            # Each open in a row lasts longer; only probes that succeed (or a reset) end the streak.
            # Jittered per opening, so breakers that opened together (a fleet's) do not probe together.
            until = store_now + self._cfg.open_for(self._reopens, self._rng.random(), self._watched())
            reopens = self._reopens + 1
        elif reopens is None:
            reopens = self._reopens
        target = SharedState(new.value, self._epoch + 1, store_now, until, reopens, reason)
        stored = self._io_transition(self._epoch, target, clear)
        if stored != target:
            return self._adopt(stored)
        if clear:
            self._warm = True
        return self._apply(stored, reason)

    def _apply(self, stored: SharedState, reason: str) -> Change | None:
        """Make ``stored`` the local state. Call with the lock held."""
        old = self._state
        new = BreakerState(stored.state)
        now = self._now()
        wall = self._wall()
        self._state = new
        self._epoch = stored.version
        self._reopens = stored.reopens
        if stored.open_until is not None:
            left = stored.open_until - (wall if self._shared else now)
            self._open_until = now + left
            self._open_until_wall = wall + left
        else:
            self._open_until = self._open_until_wall = math.inf
        self._probes = 0
        # Successes counted on the fast path before the change belong to the old window.
        self._tally.take()
        self._reflags()
        if new is old:
            return None
        self._since = now
        self._since_wall = wall
        if new is _O:
            self._opens += 1
            self._health_due = now + self._cfg.health_check_seconds
        if self._transitions is None:
            self._transitions = deque(maxlen=10)
        self._transitions.append(Transition(wall, old.value, new.value, reason))
        event = None
        if self._bus.listening:
            open_until = self._open_until_wall if new is _O else None
            event = _EVENTS[new](self.name, wall, old.value, new.value, reason, open_until)
        return new, event

    def _adopt(self, stored: SharedState) -> Change | None:
        """Take a state written by another breaker sharing the store. Call with the lock held."""
        self._warm = False  # the shared window is unknown here; the next record tells
        return self._apply(stored, f"changed by another breaker sharing the store: {stored.reason}")

    def _after(self, change: Change | None) -> None:
        """After the lock is released: emit the transition's event and start timers it needs."""
        if change is None:
            return
        state, event = change
        if event is not None:
            self._bus.emit(event)
        if state is _O:
            self._opened()

    def _watched(self) -> bool:
        """Hook: True when a health check watches the breaker while open (the health mixin says)."""
        return False

    def _opened(self) -> None:
        """Hook: the breaker just opened (the health mixin starts its timer)."""

    # -- the store, with fall-back to local state --------------------------------------------------------

    def _io_record(self, successes: int, outcome: int) -> tuple[WindowCounts, SharedState | None]:
        if self._degraded:
            self._try_store()
        try:
            return self._active.record(self._key, self._spec, successes, outcome, self._store_now())
        except StoreError as exc:
            self._fail_over(exc)
            return self._active.record(self._key, self._spec, successes, outcome, self._store_now())

    def _io_counts(self) -> WindowCounts:
        try:
            return self._active.counts(self._key, self._spec, self._store_now())
        except StoreError as exc:
            self._fail_over(exc)
            return self._active.counts(self._key, self._spec, self._store_now())

    def _io_transition(self, expected: int, target: SharedState, clear: bool) -> SharedState:
        try:
            return self._active.transition(self._key, expected, target, clear)
        except StoreError as exc:
            self._fail_over(exc, locked=True)
            return self._active.transition(self._key, expected, target, clear)

    def _io_acquire_probe(self, version: int, limit: int) -> int | None:
        lease = self._cfg.probe_lease_seconds
        try:
            return self._active.acquire_probe(self._key, version, limit, self._store_now(), lease)
        except StoreError as exc:
            self._fail_over(exc)
            return self._active.acquire_probe(self._key, version, limit, self._store_now(), lease)

    def _io_finish_probe(self, version: int, token: int, success: bool | None) -> int:
        try:
            return self._active.finish_probe(self._key, version, token, success)
        except StoreError as exc:
            self._fail_over(exc)
            return self._active.finish_probe(self._key, version, token, success)

    def _io_probes(self) -> int:
        try:
            return self._active.probes(self._key, self._store_now())
        except StoreError as exc:
            self._fail_over(exc)
            return self._active.probes(self._key, self._store_now())

    def _local_state(self) -> SharedState:
        store_now = self._store_now()
        until = None
        if self._state is _O:
            until = store_now + max(0.0, self._open_until - self._now())
        return SharedState(self._state.value, self._epoch, store_now, until, self._reopens, "local")

    def _fail_over(self, exc: StoreError, *, locked: bool = False) -> None:
        """The store failed: carry on with local state, say so once, and try the store again later."""
        if locked:
            switched = self._switch_to_local()
        else:
            with self._lock:
                switched = self._switch_to_local()
        if switched and self._bus.listening:
            store = self._store.name
            self._bus.emit(StoreUnavailable(self.name, self._wall(), store, str(exc)))

    def _switch_to_local(self) -> bool:
        self._store_retry_at = self._now() + self._cfg.store_retry_seconds
        if self._active is not self._store:
            return False
        local = MemoryBreakerStore(shared=self._shared, name="local")
        local.seed(self._key, self._local_state())
        self._active = local
        self._degraded = True
        self._reflags()
        return True

    def _try_store(self) -> None:
        """While degraded, and at most every ``store_retry_seconds``: is the store back?"""
        now = self._now()
        if now < self._store_retry_at:
            return
        with self._lock:
            if not self._degraded or now < self._store_retry_at:
                return
            self._store_retry_at = now + self._cfg.store_retry_seconds
            try:
                stored = self._store.load(self._key)
                if stored is None:
                    # The store lost everything (a restarted server): hand it our state.
                    mine = self._local_state()
                    stored = self._store.transition(self._key, 0, SharedState(**_fields(mine, 1)), False)
            except StoreError:
                return
            self._active = self._store
            self._degraded = False
            change = self._adopt(stored) if stored.version != self._epoch else None
            self._reflags()
        if self._bus.listening:
            self._bus.emit(StoreRecovered(self.name, self._wall(), self._store.name))
        self._after(change)

    def _sync(self, now: float) -> None:
        """Shared stores: look for a state written elsewhere, at most every ``sync_seconds``."""
        self._next_sync = now + self._cfg.sync_seconds
        if self._degraded:
            self._try_store()
            return
        try:
            stored = self._store.load(self._key)
        except StoreError as exc:
            self._fail_over(exc)
            return
        if stored is None or stored.version == self._epoch:
            return
        with self._lock:
            change = self._adopt(stored) if stored.version != self._epoch else None
        self._after(change)


def is_warm(cfg: BreakerConfig, counts: WindowCounts) -> bool:
    """True when a success can no longer trip the breaker (so successes may skip the window for now)."""
    return counts.calls >= cfg.min_calls_in_window or not (counts.failures or counts.slow)


def _fields(state: SharedState, version: int) -> dict[str, Any]:
    return {
        "state": state.state,
        "version": version,
        "since": state.since,
        "open_until": state.open_until,
        "reopens": state.reopens,
        "reason": state.reason,
    }
