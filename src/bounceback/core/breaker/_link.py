"""The store link: a breaker's part that talks to a store that can fail, and falls back to local state.

A breaker on its default in-memory store talks to that store directly: it cannot fail, so it needs no
link (and pays for none). A breaker given a store (SQLite, Redis, batched, or any other
:class:`~bounceback.core.breaker._store.BreakerStore`) talks to a :class:`StoreLink` instead, which offers
the same port and adds what a real store needs:

* every call that raises :class:`~bounceback.errors.StoreError` switches the link to a private
  :class:`~bounceback.core.breaker._store.MemoryBreakerStore` seeded with the breaker's last known state
  (asked through the ``local_state`` callback), and the call is made again there;
* the breaker is told once per outage (``on_switch(error)``) so it can emit ``StoreUnavailable`` and
  decide whether to fail open or closed;
* :meth:`StoreLink.reconnect` tries the real store again, at most every ``store_retry_seconds``, and
  returns its state when it answers (a store that lost everything is handed the local state first).

The link keeps its own small lock for switching; the breaker may hold its lock while it calls the link
(a transition's compare-and-set), never the other way round, so the two cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from bounceback.core.breaker._store import BreakerStore, MemoryBreakerStore, SharedState, WindowSpec
from bounceback.core.breaker._window import WindowCounts
from bounceback.errors import StoreError

__all__ = ["StoreLink"]


class StoreLink:
    """A breaker's link to a store that can fail: the store port, with fall-back to local state.

    ``local_state()`` returns the breaker's state to seed the local store with; ``on_switch(error)`` is
    called (outside the link's lock) when the link falls back; ``now()`` is the monotonic clock that
    paces the retries, every ``retry_seconds`` (the breaker keeps it in step with its limits).

    >>> from bounceback.core.breaker._store import MemoryBreakerStore, SharedState
    >>> link = StoreLink(MemoryBreakerStore(name="mem"), lambda: SharedState("closed", 0, 0.0), print, float)
    >>> link.name, link.degraded
    ('mem', False)
    """

    __slots__ = (
        "_active",
        "_local_state",
        "_lock",
        "_now",
        "_on_switch",
        "degraded",
        "name",
        "retry_at",
        "retry_seconds",
        "shared",
        "store",
    )

    def __init__(
        self,
        store: BreakerStore,
        local_state: Callable[[], SharedState],
        on_switch: Callable[[StoreError], object],
        now: Callable[[], float],
        retry_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.name = store.name
        """The real store's name (events and metrics say which store is away)."""
        self.shared = bool(store.shared)
        self._active = store
        self._local_state = local_state
        self._on_switch = on_switch
        self._now = now
        self._lock = threading.Lock()
        self.retry_seconds = retry_seconds
        self.degraded = False
        """True while the real store cannot be reached and the local store stands in."""
        self.retry_at = 0.0
        """Monotonic time of the next attempt to reach the real store."""

    def success_counter(self, key: str, spec: WindowSpec) -> Callable[[], object] | None:
        """The store's own counter of ``key``'s fast-path successes, if it offers one (see ``_store``)."""
        offer = getattr(self.store, "success_counter", None)
        return offer(key, spec) if offer is not None else None

    def on_state_change(self, key: str, notify: Callable[[SharedState], object]) -> bool:
        """Ask the store to call ``notify(state)`` when a state change made elsewhere reaches it (a push), if
        it can (see ``_store``); True when it will."""
        offer = getattr(self.store, "on_state_change", None)
        if offer is None:
            return False
        offer(key, notify)
        return True

    def fall_back(self, key: str, error: StoreError) -> None:
        """Switch to a local store seeded with the breaker's state; tell the breaker once per outage."""
        with self._lock:
            self.retry_at = self._now() + self.retry_seconds
            if self.degraded:
                return
            local = MemoryBreakerStore(shared=self.shared, name="local")
            local.seed(key, self._local_state())
            self._active = local
            self.degraded = True
        self._on_switch(error)

    def reconnect(self, key: str) -> SharedState | None:
        """While degraded and due: the real store's state if it answers now (then the link uses it again)."""
        now = self._now()
        if not self.degraded or now < self.retry_at:
            return None
        with self._lock:
            if not self.degraded or now < self.retry_at:
                return None
            self.retry_at = now + self.retry_seconds
            try:
                stored = self.store.load(key)
                if stored is None:
                    # The store lost everything (a restarted server): hand it our state.
                    stored = self.store.transition(key, 0, replace(self._local_state(), version=1), False)
            except StoreError:
                return None
            self._active = self.store
            self.degraded = False
            return stored

    # -- the port, each call with its fall-back ------------------------------------------------------------

    def load(self, key: str) -> SharedState | None:
        """:meth:`BreakerStore.load`, falling back to local state when the store fails."""
        try:
            return self._active.load(key)
        except StoreError as exc:
            self.fall_back(key, exc)
            return self._active.load(key)

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        """:meth:`BreakerStore.record`, falling back to local state when the store fails."""
        try:
            return self._active.record(key, spec, successes, outcome, now)
        except StoreError as exc:
            self.fall_back(key, exc)
            return self._active.record(key, spec, successes, outcome, now)

    def counts(self, key: str, spec: WindowSpec, now: float) -> WindowCounts:
        """:meth:`BreakerStore.counts`, falling back to local state when the store fails."""
        try:
            return self._active.counts(key, spec, now)
        except StoreError as exc:
            self.fall_back(key, exc)
            return self._active.counts(key, spec, now)

    def transition(self, key: str, expected: int, new: SharedState, clear: bool) -> SharedState:
        """:meth:`BreakerStore.transition`, falling back to local state when the store fails."""
        try:
            return self._active.transition(key, expected, new, clear)
        except StoreError as exc:
            self.fall_back(key, exc)
            return self._active.transition(key, expected, new, clear)

    def acquire_probe(self, key: str, version: int, limit: int, now: float, lease: float) -> int | None:
        """:meth:`BreakerStore.acquire_probe`, falling back to local state when the store fails."""
        try:
            return self._active.acquire_probe(key, version, limit, now, lease)
        except StoreError as exc:
            self.fall_back(key, exc)
            return self._active.acquire_probe(key, version, limit, now, lease)

    def finish_probe(self, key: str, version: int, token: int, success: bool | None) -> int:
        """:meth:`BreakerStore.finish_probe`, falling back to local state when the store fails."""
        try:
            return self._active.finish_probe(key, version, token, success)
        except StoreError as exc:
            self.fall_back(key, exc)
            return self._active.finish_probe(key, version, token, success)

    def probes(self, key: str, now: float) -> int:
        """:meth:`BreakerStore.probes`, falling back to local state when the store fails."""
        try:
            return self._active.probes(key, now)
        except StoreError as exc:
            self.fall_back(key, exc)
            return self._active.probes(key, now)

    def __repr__(self) -> str:
        return f"StoreLink({self.store!r}, degraded={self.degraded})"
